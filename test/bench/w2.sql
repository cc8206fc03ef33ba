-- W2: :txns transactions of 10 row changes each (see bench_w2_run in schema.sql).
-- Run by test/bench/run.sh (psql -v txns=N); CALL must run outside a transaction block.
\set ON_ERROR_STOP 1
CALL bench_w2_run(:txns);
