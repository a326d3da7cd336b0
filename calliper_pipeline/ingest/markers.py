"""Names shared by the readers and validation: rows refused on reading, and repairs counted.

A reader keeps every row of a file in its frame, so ``source_row`` stays the row of the file;
a row that cannot be read as a POI carries a reason in :data:`COL_READ_REASON` (with the field
in :data:`COL_READ_FIELD` and the raw text in :data:`COL_READ_RAW`) and is quarantined by
:func:`.validate.normalise_source` before any filter. :data:`COL_CLEANED` marks rows whose text
was repaired; their count is reported under :data:`REPAIR_CONTROL_CHARACTERS`.
"""

from __future__ import annotations

#: Quarantine reasons of rows refused while reading (:mod:`.validate` has the others).
REASON_RAGGED_ROW = "ragged row"
REASON_NOT_A_POINT = "not a point"
#: The repair counted in a source's ``cleaned_by``.
REPAIR_CONTROL_CHARACTERS = "control characters stripped"

COL_READ_REASON = "__calliper_read_reason"
COL_READ_FIELD = "__calliper_read_field"
COL_READ_RAW = "__calliper_read_raw"
COL_CLEANED = "__calliper_cleaned"
#: The marker columns a reader adds (dropped before filters and from quarantined rows' JSON).
READ_MARKERS = (COL_READ_REASON, COL_READ_FIELD, COL_READ_RAW)
MARKER_COLUMNS = (*READ_MARKERS, COL_CLEANED)
