-- The request role may call the whole API surface and the helpers it uses;
-- nothing else (function EXECUTE is revoked from PUBLIC by default).
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA api TO minicrm_api;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA app TO minicrm_api;
