-- setup: install the cdc_relay extension and check that the version the
-- loaded library reports is the version recorded for the extension; define
-- the helper the later files share (pg_regress runs every file in REGRESS
-- order in one database).
CREATE EXTENSION cdc_relay;
SELECT cdc_relay.version() AS library_version;
SELECT extversion, extversion = cdc_relay.version() AS versions_match,
       extnamespace::regnamespace AS schema
  FROM pg_extension WHERE extname = 'cdc_relay';

-- regress_events(slot, label, VARIADIC opts): a helper for the later files
-- (filters, publications).  It peeks at the slot's pending changes under the
-- given plugin options (consuming nothing) and returns one row:
--   events  the events that carry a seq (changes, truncates, transactional
--           messages), in stream order, labelled by "label":
--             'table'  schema.table, truncate t(schema.table ...), joined by ', '
--             'op'     op:table/key id, truncate t:table+table, joined by ' '
--   seq_ok  every transaction has exactly one commit, and its events carry
--           seq 1..n where n is the commit's "events"
--   txns    the number of transactions sent (begin events)
CREATE FUNCTION regress_events(slot name, label text, VARIADIC opts text[],
    OUT events text, OUT seq_ok boolean, OUT txns bigint)
LANGUAGE sql AS $$
  WITH e AS (
    SELECT n, d, sum(CASE WHEN d->>'op' = 'begin' THEN 1 ELSE 0 END) OVER (ORDER BY n) AS tx
      FROM (SELECT row_number() OVER () AS n, data::json::jsonb AS d
              FROM pg_logical_slot_peek_changes(slot, NULL, NULL, VARIADIC opts)) s),
  per_tx AS (
    SELECT tx,
           array_agg((d->>'seq')::int ORDER BY n) FILTER (WHERE d ? 'seq') AS seqs,
           max((d->>'events')::int) FILTER (WHERE d->>'op' = 'commit') AS events,
           count(*) FILTER (WHERE d->>'op' = 'commit') AS commits
      FROM e GROUP BY tx)
  SELECT (SELECT CASE label
                 WHEN 'table' THEN
                   string_agg(CASE WHEN d->>'op' = 't'
                                   THEN 't(' || (SELECT string_agg(format('%s.%s', x->>'schema', x->>'table'), ' ')
                                                   FROM jsonb_array_elements(d->'tables') x) || ')'
                                   ELSE format('%s.%s', d->>'schema', d->>'table') END,
                              ', ' ORDER BY n)
                 WHEN 'op' THEN
                   string_agg(CASE WHEN d->>'op' = 't'
                                   THEN 't:' || (SELECT string_agg(x->>'table', '+')
                                                   FROM jsonb_array_elements(d->'tables') x)
                                   ELSE format('%s:%s/%s', d->>'op', d->>'table', d->'key'->>'id') END,
                              ' ' ORDER BY n)
                 END
            FROM e WHERE d ? 'seq'),
         (SELECT bool_and(commits = 1 AND
                          coalesce(seqs, '{}') = coalesce(ARRAY(SELECT generate_series(1, events)), '{}'))
            FROM per_tx),
         (SELECT count(*) FROM e WHERE d->>'op' = 'begin')
$$;
