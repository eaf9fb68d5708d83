-- Keyset pages (SPEC §14): every list takes the last row's sort key and id
-- as typed parameters and answers the rows after it, with next_after naming
-- the keyset of its own last row; the page and the keyset exclude each other.
BEGIN;
SELECT plan(14);

SELECT (api.auth_register('keyset@example.com', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'K', 'Keyset',
        '\x7702'::bytea, now() + interval '1 day') -> 'organization' ->> 'id') AS org,
       app.user_id() AS owner
  FROM app.act_as(NULL) \gset
RESET ROLE;

SELECT app.act_as(:'owner', :'org');
SELECT (api.contacts_create('Acme') ->> 'id') AS contact \gset
SELECT count(*) FROM (SELECT api.deals_create(:'contact', 'D' || n, (n % 3) * 10, 'EUR') FROM generate_series(1, 7) n) x;
SELECT count(*) FROM (SELECT api.contacts_create('Acme ' || n) FROM generate_series(1, 4) n) x;
RESET ROLE;

-- Deals by amount, ascending: the whole order, then page by page.
SELECT app.act_as(:'owner', :'org');
RESET ROLE;  -- assertions as the test's superuser; the context stays set
CREATE TEMP TABLE whole AS
SELECT (e ->> 'id')::uuid AS id, (e ->> 'amount')::numeric AS amount, o AS n
  FROM jsonb_array_elements(api.deals_list(1, 100, p_order_by => 'amount', p_order => 'asc') -> 'items') WITH ORDINALITY AS t(e, o);
SELECT api.deals_list(1, 3, p_order_by => 'amount', p_order => 'asc') AS p1 \gset
SELECT ok((:'p1'::jsonb ->> 'next_after') IS NOT NULL, 'a page with rows after it names its last row');
SELECT is((:'p1'::jsonb -> 'next_after' ->> 'id')::uuid, (SELECT id FROM whole WHERE n = 3), 'next_after is the last row shown');
SELECT is(jsonb_array_length(:'p1'::jsonb -> 'items'), 3, 'the extra row read is not shown');
SELECT api.deals_list(NULL, 3, p_order_by => 'amount', p_order => 'asc',
                      p_after_amount => (:'p1'::jsonb -> 'next_after' ->> 'key')::numeric,
                      p_after_id => (:'p1'::jsonb -> 'next_after' ->> 'id')::uuid) AS p2 \gset
SELECT is(ARRAY(SELECT (e ->> 'id')::uuid FROM jsonb_array_elements(:'p2'::jsonb -> 'items') e),
          ARRAY(SELECT id FROM whole WHERE n BETWEEN 4 AND 6 ORDER BY n), 'the keyset page is the rows after the key, ties by id');
SELECT is(:'p2'::jsonb -> 'page', 'null'::jsonb, 'a keyset page has no page number');
SELECT api.deals_list(NULL, 3, p_order_by => 'amount', p_order => 'asc',
                      p_after_amount => (:'p2'::jsonb -> 'next_after' ->> 'key')::numeric,
                      p_after_id => (:'p2'::jsonb -> 'next_after' ->> 'id')::uuid) AS p3 \gset
SELECT is(:'p3'::jsonb -> 'next_after', 'null'::jsonb, 'the last page names nothing after it');
SELECT is((:'p3'::jsonb -> 'items' -> 0 ->> 'id')::uuid, (SELECT id FROM whole WHERE n = 7), 'the last page holds the last row');
SELECT is((:'p3'::jsonb ->> 'total')::int, 7, 'total counts every match, not what is left');

-- Every other sort key type: created_at (timestamptz), title (text).
SELECT api.deals_list(1, 2, p_order_by => 'title', p_order => 'desc') AS t1 \gset
SELECT is(api.deals_list(NULL, 2, p_order_by => 'title', p_order => 'desc',
                         p_after_title => :'t1'::jsonb -> 'next_after' ->> 'key',
                         p_after_id => (:'t1'::jsonb -> 'next_after' ->> 'id')::uuid) -> 'items' -> 0 ->> 'title',
          'D5', 'title keysets go on in text order');
SELECT api.contacts_list(1, 2, p_search => 'acme') AS c1 \gset
SELECT is(jsonb_array_length(api.contacts_list(NULL, 10, p_search => 'acme',
                             p_after_created_at => (:'c1'::jsonb -> 'next_after' ->> 'key')::timestamptz,
                             p_after_id => (:'c1'::jsonb -> 'next_after' ->> 'id')::uuid) -> 'items'),
          3, 'contact keysets go on after the key (5 matches, 2 seen)');

-- The paging arguments are checked.
SELECT throws_ok($$SELECT api.deals_list(NULL, 3, p_after_id => gen_random_uuid())$$,
                 'MC400', NULL, 'an id without its sort key is refused');
SELECT throws_ok($$SELECT api.tasks_list(NULL, 3, p_after_due_date => current_date)$$,
                 'MC400', NULL, 'a sort key without its id is refused');
SELECT throws_ok($$SELECT api.activities_list(gen_random_uuid(), 2, 3, now(), gen_random_uuid())$$,
                 'MC404', NULL, 'an unknown deal is still not found');
SELECT throws_ok(format($$SELECT api.contacts_list(2, 3, p_after_created_at => now(), p_after_id => %L)$$, :'contact'),
                 'MC400', 'cursor and page cannot be used together', 'a keyset and a page together are refused');

SELECT * FROM finish();
ROLLBACK;
