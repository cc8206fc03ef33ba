-- Decoding benchmark: schema, created before any replication slot exists so that
-- no DDL lands in the decoded WAL range.  Run by test/bench/run.sh.
\set ON_ERROR_STOP 1

-- Same row shape for both workloads: (int8 primary key, text, numeric,
-- timestamptz, jsonb, bool).
CREATE TABLE bench_w1 (
    id  int8 PRIMARY KEY,
    t   text        NOT NULL,
    n   numeric     NOT NULL,
    ts  timestamptz NOT NULL,
    j   jsonb       NOT NULL,
    b   bool        NOT NULL
);
CREATE TABLE bench_w2 (LIKE bench_w1 INCLUDING ALL);

-- Generates the row for a given id; used by both workloads so their rows are alike.
CREATE FUNCTION bench_row_t(id int8) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT 'customer-' || id || ' ordered item ' || (id % 97) || ' via web' $$;
CREATE FUNCTION bench_row_j(id int8) RETURNS jsonb LANGUAGE sql IMMUTABLE
    AS $$ SELECT jsonb_build_object('id', id, 'qty', id % 7, 'tags', jsonb_build_array('a', 'b'),
                                    'addr', jsonb_build_object('zip', lpad((id % 100000)::text, 5, '0'))) $$;

-- W2 updates and deletes rows inserted by the previous transaction; transaction 1
-- works on these seed rows (ids -5 .. 0), so every statement touches exactly one row.
INSERT INTO bench_w2
SELECT g, bench_row_t(g), g * 1.25, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       bench_row_j(g), g % 2 = 0
FROM generate_series(-5, 0) AS g;

-- W2: :txns transactions of exactly 10 row changes each: 6 inserts, 3 updates, 1 delete.
-- Transaction i inserts ids 6(i-1)+1 .. 6i, updates the first three rows the previous
-- transaction inserted and deletes the last one.  Each statement must touch one row.
CREATE PROCEDURE bench_w2_run(txns int8)
LANGUAGE plpgsql AS $$
DECLARE
    prev int8;
    base int8;
    k    int8;
    cnt  int8;
BEGIN
    FOR i IN 1 .. txns LOOP
        base := 6 * (i - 1);
        prev := 6 * (i - 2);
        FOR k IN base + 1 .. base + 6 LOOP
            INSERT INTO bench_w2 VALUES
                (k, bench_row_t(k), k * 1.25,
                 timestamptz '2024-01-01 00:00:00+00' + k * interval '1 second',
                 bench_row_j(k), k % 2 = 0);
        END LOOP;
        FOR k IN prev + 1 .. prev + 3 LOOP
            UPDATE bench_w2
               SET t = t || ' (updated)', n = n + 0.01, ts = ts + interval '1 hour',
                   j = jsonb_set(j, '{qty}', to_jsonb(i % 13)), b = NOT b
             WHERE id = k;
            GET DIAGNOSTICS cnt = ROW_COUNT;
            IF cnt <> 1 THEN
                RAISE EXCEPTION 'bench_w2_run: update of id % touched % rows', k, cnt;
            END IF;
        END LOOP;
        DELETE FROM bench_w2 WHERE id = prev + 6;
        GET DIAGNOSTICS cnt = ROW_COUNT;
        IF cnt <> 1 THEN
            RAISE EXCEPTION 'bench_w2_run: delete of id % touched % rows', prev + 6, cnt;
        END IF;
        COMMIT;
    END LOOP;
END
$$;

-- pgoutput needs a publication; it must exist before the slots are created.
CREATE PUBLICATION bench_pub FOR ALL TABLES;
