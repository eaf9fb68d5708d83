-- One function per name in the schemas we write: a changed signature must
-- replace the function, not leave the old one callable beside it. (The api
-- schema is recreated on every migrate; app and private are replaced in place,
-- so a stale overload there would survive without this check.)
BEGIN;
SELECT plan(2);

SELECT is_empty($$
  SELECT n.nspname || '.' || p.proname || ' has ' || count(*) || ' overloads'
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname IN ('api', 'app', 'private')
   GROUP BY n.nspname, p.proname
  HAVING count(*) > 1
$$, 'no function in api, app or private has two overloads');

-- The check would see one: an extra overload made here fails it.
CREATE FUNCTION app.user_id(p_unused int) RETURNS uuid LANGUAGE sql AS $$ SELECT NULL::uuid $$;
SELECT isnt_empty($$
  SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname IN ('api', 'app', 'private')
   GROUP BY n.nspname, p.proname HAVING count(*) > 1
$$, 'an overload is detected');

SELECT * FROM finish();
ROLLBACK;
