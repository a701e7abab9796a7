"""What a head count may look like: the constants every way a count enters shares.

An HTTP source reads one value at a time (tracker/sources/http_values.py) and an
import a whole column at a time (tracker/ingest/cells.py); both must agree on which
thousands separators exist and how large a count can be. No pandas here: the
sources are loaded when a config is validated, `tracker status` included, which must
start without it.
"""

from __future__ import annotations

#: Thousands separators: comma, underscore, space, apostrophe, NBSP, narrow NBSP, thin
#: space. Not ".": "1.234" is 1.234 in English and 1234 in German, and a count must not
#: depend on the reader.
SEPARATOR_CHARS = ",_ '\u00a0\u202f\u2009"
#: Counts above this cannot be real and would overflow int64 arithmetic.
MAX_COUNT = 2**62
