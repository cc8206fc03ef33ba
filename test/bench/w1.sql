-- W1: one transaction inserting :rows rows.  Run by test/bench/run.sh (psql -v rows=N).
\set ON_ERROR_STOP 1
INSERT INTO bench_w1
SELECT g, bench_row_t(g), g * 1.25, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       bench_row_j(g), g % 2 = 0
FROM generate_series(1, :rows) AS g;
