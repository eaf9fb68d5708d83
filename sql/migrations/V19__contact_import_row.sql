-- One data row of a contacts CSV import (api.contacts_import): the columns a
-- file may set, and row_no, the row as a spreadsheet numbers it (the header
-- is row 1). The staging table of an import is a temporary table of this
-- type (ON COMMIT DROP), so the functions that read it are checked against
-- a type that always exists.
CREATE TYPE app.contact_import_row AS (
  row_no      int,
  name        text,
  email       text,
  phone       text,
  external_id text,
  owner_email text
);
