"""``html_page``: read a head count from a web page with a CSS selector and/or a regex.

For companies whose only public figure is on a careers or "about" page
("12,345 employees", "1.2K people"). Pages change without notice, so every way
this can fail names what it looked for and what it found instead; a page that no
longer matches is a failed fetch for that company, never a guessed number.

Example::

    [sources.careers]
    type = "html_page"
    url = "https://{website:raw}/about"
    selector = "#stats .employees"     # CSS (soupsieve); the element's text is read
    regex = "([\\d,.]+[KkMm]?) employees"   # optional; first group, else the whole match
    units = ["employees", "people"]    # words the count may be followed by (the default
                                       # also has "employee" and "staff"; [] for none)

Whatever the selector and regex leave must be wholly a count (see
:func:`~tracker.sources.http_values.parse_count`): "12,345 employees" and "1.2K" are,
"10,001+" (a size band), "about 500" and "Error 503" are failures, never a number.
"""

from __future__ import annotations

import re
from datetime import date

from bs4 import BeautifulSoup
from pydantic import field_validator, model_validator
from soupsieve import SelectorSyntaxError
from soupsieve import compile as compile_css

from tracker.errors import FatalSourceError
from tracker.records import CompanyRef, Observation
from tracker.sources.http import Fetched, HttpSettings, HttpSource
from tracker.sources.http_values import check_template, clip, expand, parse_count


class HtmlPageSettings(HttpSettings):
    """``[sources.NAME]`` of type ``html_page``: a URL template plus selector and/or regex."""

    url: str
    selector: str | None = None
    regex: str | None = None

    @field_validator("url")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value)

    @field_validator("selector")
    @classmethod
    def _css(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_css(value)
            except SelectorSyntaxError as exc:
                raise ValueError(f"invalid CSS selector {value!r}: {exc}") from None
        return value

    @field_validator("regex")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _something_to_look_for(self) -> HtmlPageSettings:
        if not self.selector and not self.regex:
            raise ValueError("set 'selector' (CSS), 'regex', or both, to say where the count is")
        return self


class HtmlPageSource(HttpSource):
    """Scrapes one count per company from an HTML page."""

    name = "html_page"
    Settings = HtmlPageSettings
    settings: HtmlPageSettings

    def request(self, company: CompanyRef, day: date) -> tuple[str, dict[str, str]]:
        params = {
            key: expand(template, company, day, quote_values=False)
            for key, template in self.settings.params.items()
        }
        return expand(self.settings.url, company, day), params

    def parse(self, fetched: Fetched, company: CompanyRef, day: date) -> Observation:
        return self.observation(company, day, self.extract(fetched.text(), fetched.url))

    def extract(self, html: str, url: str = "the page") -> int:
        """The count on a page: selector narrows to an element's text, regex picks the number.

        soupsieve and re cache compiled patterns, so compiling per call costs nothing.
        """
        text, what = html, f"{url}: the page text"
        if self.settings.selector:
            soup = BeautifulSoup(html, "html.parser")
            element = compile_css(self.settings.selector).select_one(soup)
            if element is None:
                title = soup.title.get_text(strip=True) if soup.title else "no title"
                raise FatalSourceError(
                    f"{url}: selector {self.settings.selector!r} matched nothing "
                    f"(page title {clip(title, 60)!r}); has the page layout changed?"
                )
            text, what = element.get_text(" ", strip=True), f"{url}: the selected text"
        if self.settings.regex:
            regex = re.compile(self.settings.regex)
            match = regex.search(text)
            if match is None:
                seen = f"{clip(text, 60)!r}" if self.settings.selector else "the page"
                raise FatalSourceError(f"{url}: regex {self.settings.regex!r} did not match {seen}")
            text = match.group(1) if regex.groups else match.group(0)
            what = f"{url}: the regex match"
        return parse_count(text, what, self.settings.units)
