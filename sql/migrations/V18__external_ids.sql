-- External ids (SPEC §12): the key a client's other system knows a contact or
-- a deal by, so that a sync can upsert by it (PUT …/by-external-id/{id}) and
-- find it (the lists' external_id filter). Optional; 1 to 255 characters,
-- kept exactly as given (no trimming, no case folding: it is someone else's
-- key); unique per organization and type, so a contact and a deal, or two
-- organizations, may use the same one.
--
-- COLLATE "C": the unique index compares bytes and never depends on the
-- operating system's locale (an upgraded glibc cannot reorder it), and
-- equality is all anyone asks of it. The unique constraint's index
-- (organization_id, external_id) serves the upsert and the list filter: text
-- equality is leakproof, so it is an index condition under RLS.
--
-- Adding a nullable column without a default rewrites nothing; building each
-- index reads the table once (a few seconds at a million rows) under the
-- migration's lock.

ALTER TABLE crm.contacts
  ADD COLUMN external_id text COLLATE "C"
    CONSTRAINT contacts_external_id_invalid CHECK (length(external_id) BETWEEN 1 AND 255),
  ADD CONSTRAINT contacts_external_id_taken UNIQUE (organization_id, external_id);

ALTER TABLE crm.deals
  ADD COLUMN external_id text COLLATE "C"
    CONSTRAINT deals_external_id_invalid CHECK (length(external_id) BETWEEN 1 AND 255),
  ADD CONSTRAINT deals_external_id_taken UNIQUE (organization_id, external_id);
