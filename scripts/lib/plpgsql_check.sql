-- Static check of every PL/pgSQL function in the current database with
-- plpgsql_check (run by scripts/test on a scratch copy of the migrated
-- template, since it installs the extension):
--
--   psql -X -v ON_ERROR_STOP=1 -v allow_file=sql/plpgsql_check.allow \
--        -d DB -f scripts/lib/plpgsql_check.sql
--
-- Every PL/pgSQL function in a non-system schema is checked (LANGUAGE sql
-- bodies are parsed and analysed by CREATE FUNCTION already) with all warning
-- classes on (other, extra, performance, security, compatibility). Any error
-- fails; a warning fails unless the allow-list names it (function and exact
-- message), and an allow-list entry that matches nothing fails too, so the
-- list cannot go stale. Failures are listed (function, table, line, message,
-- source line) and the script ends with an error.
\set QUIET on
\set ON_ERROR_STOP on
\pset footer off
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS plpgsql_check SCHEMA public;
-- The functions qualify every name they use; checking with nothing but
-- pg_catalog on the path makes an unqualified reference an error here too.
SET search_path = pg_catalog, pg_temp;

-- What to check: one row per plain function, one per (trigger function,
-- table it is attached to). A trigger function attached to several tables is
-- checked against each of them, because NEW and OLD take the row type of the
-- table and a column that exists on one may not exist on another. Transition
-- tables (REFERENCING OLD/NEW TABLE) are passed on too.
CREATE TEMP TABLE check_target AS
SELECT DISTINCT p.oid::regprocedure AS fn,
       coalesce(t.tgrelid, 0)::regclass AS relid,
       t.tgoldtable AS oldtable, t.tgnewtable AS newtable,
       p.prorettype = 'trigger'::regtype AS is_trigger
  FROM pg_proc p
  JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
  JOIN pg_namespace n ON n.oid = p.pronamespace
  LEFT JOIN pg_trigger t ON t.tgfoid = p.oid AND NOT t.tgisinternal
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\_%'
   -- functions that belong to an extension are not ours to fix
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e');

CREATE TEMP TABLE finding (
  fn regprocedure, relid regclass, lineno int, level text,
  message text, detail text, hint text, source text
);

DO $check$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT * FROM pg_temp.check_target ORDER BY fn::text, relid::text LOOP
    IF r.is_trigger AND r.relid = 0 THEN
      -- Without a table, NEW and OLD have no type: the body cannot be checked.
      INSERT INTO pg_temp.finding (fn, level, message)
      VALUES (r.fn, 'warning', 'trigger function is not attached to any table, so it was not checked');
      CONTINUE;
    END IF;
    BEGIN
      INSERT INTO pg_temp.finding
      SELECT r.fn, nullif(r.relid, 0), c.lineno, c.level, c.message, c.detail, c.hint, NULL
        FROM public.plpgsql_check_function_tb(r.fn, r.relid,
               fatal_errors => false, other_warnings => true, extra_warnings => true,
               performance_warnings => true, security_warnings => true,
               compatibility_warnings => true,
               oldtable => r.oldtable, newtable => r.newtable) c;
    EXCEPTION WHEN OTHERS THEN
      INSERT INTO pg_temp.finding (fn, relid, level, message)
      VALUES (r.fn, nullif(r.relid, 0), 'error', 'plpgsql_check could not check it: ' || SQLERRM);
    END;
  END LOOP;
END
$check$;

-- The source line each finding points at (line 1 is the one that holds the
-- opening quote of the body).
UPDATE pg_temp.finding f
   SET source = btrim((string_to_array(p.prosrc, E'\n'))[f.lineno])
  FROM pg_proc p
 WHERE p.oid = f.fn AND f.lineno IS NOT NULL;

-- The allow-list: "function | message | reason" a line; '#' starts a comment.
\set allow_text `cat :allow_file`
CREATE TEMP TABLE allow AS
SELECT t.n AS line_no, t.l AS line,
       btrim(m[1]) AS fn, btrim(m[2]) AS message, btrim(m[3]) AS reason
  FROM regexp_split_to_table(:'allow_text', E'\n') WITH ORDINALITY AS t(l, n)
  LEFT JOIN LATERAL regexp_match(t.l, '^([^|]*)\|([^|]*)\|(.*)$') AS m ON true
 WHERE btrim(t.l) <> '' AND btrim(t.l) NOT LIKE '#%';

CREATE TEMP TABLE problem AS
SELECT f.fn::text AS function, f.relid::text AS "table", f.lineno AS line, f.level,
       f.message, f.detail, f.hint, f.source
  FROM pg_temp.finding f
 WHERE f.level = 'error'
    OR NOT EXISTS (SELECT 1 FROM pg_temp.allow a
                    WHERE a.fn = f.fn::text AND a.message = f.message AND a.reason <> '');

CREATE TEMP TABLE bad_allow AS
SELECT a.line_no, a.line,
       CASE WHEN a.fn IS NULL THEN 'not "function | message | reason"'
            WHEN a.reason = '' THEN 'no reason given'
            ELSE 'matches no warning: remove it' END AS why
  FROM pg_temp.allow a
 WHERE a.fn IS NULL OR a.reason = ''
    OR NOT EXISTS (SELECT 1 FROM pg_temp.finding f
                    WHERE f.level <> 'error' AND f.fn::text = a.fn AND f.message = a.message);

SELECT (SELECT count(DISTINCT fn) FROM pg_temp.check_target) AS n_functions,
       (SELECT count(*) FROM pg_temp.check_target WHERE is_trigger) AS n_trigger_checks,
       (SELECT count(*) FROM pg_temp.finding WHERE level = 'error') AS n_errors,
       (SELECT count(*) FROM pg_temp.finding WHERE level <> 'error') AS n_warnings,
       (SELECT count(*) FROM pg_temp.problem) AS n_problems,
       (SELECT count(*) FROM pg_temp.bad_allow) AS n_bad_allow,
       EXISTS (SELECT FROM pg_temp.problem) AS has_problems,
       EXISTS (SELECT FROM pg_temp.bad_allow) AS has_bad_allow,
       EXISTS (SELECT FROM pg_temp.problem) OR EXISTS (SELECT FROM pg_temp.bad_allow) AS failed
\gset

\echo plpgsql_check: :n_functions functions checked (:n_trigger_checks trigger function/table pairs), :n_errors errors, :n_warnings warnings
\if :failed
  \if :has_problems
    \echo
    \echo plpgsql_check: :n_problems finding(s) that are errors or warnings not on :allow_file
    \x on
    SELECT * FROM pg_temp.problem ORDER BY function, "table", line NULLS FIRST, message;
    \x off
  \endif
  \if :has_bad_allow
    \echo
    \echo plpgsql_check: :n_bad_allow bad entr(y/ies) in :allow_file
    SELECT line_no AS line, why, line AS entry FROM pg_temp.bad_allow ORDER BY line_no;
  \endif
  \echo
  \echo Fix the function in sql/functions, or (a warning only) add "function | message | reason" to :allow_file.
  DO $$ BEGIN RAISE EXCEPTION 'plpgsql_check failed (listed above)'; END $$;
\else
  \echo plpgsql_check: no errors; every warning is on :allow_file
\endif
