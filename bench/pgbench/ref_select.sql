-- Fixed-cost breakdown: the statement alone (the benchmark's id lookup, no
-- deal, no context): what any one-statement transaction costs here.
\set i random(1, 1000)
SELECT (SELECT id FROM public.bench_deals WHERE n = :i)::text;
