-- messages: pg_logical_emit_message.  Transactional messages are events of
-- their transaction (seq, inside begin/commit, dropped on rollback);
-- non-transactional ones are sent on their own as soon as decoded, without
-- commit_lsn/seq, even if their transaction rolls back.  Text content is
-- JSON-escaped (quotes, backslashes, newlines, control characters, unicode);
-- content that is not valid text (e.g. with \x00 bytes) is base64.  The
-- message-prefixes option keeps only the listed prefixes.
-- (In PG15 a non-transactional message's WAL is not flushed at once, so a
-- committed write follows each one before reading.)
SELECT 'init' FROM pg_create_logical_replication_slot('messages_slot', 'cdc_relay');
CREATE TABLE msg_t (id int PRIMARY KEY);
SHOW server_encoding;

-- transactional, with a change between two messages
BEGIN;
SELECT 'msg' FROM pg_logical_emit_message(true, 'app', 'first');
INSERT INTO msg_t VALUES (1);
SELECT 'msg' FROM pg_logical_emit_message(true, 'app', 'second');
COMMIT;
-- transactional, alone in its transaction
SELECT 'msg' FROM pg_logical_emit_message(true, 'app', 'alone');
-- transactional, rolled back: nothing
BEGIN;
SELECT 'msg' FROM pg_logical_emit_message(true, 'app', 'rolled back');
INSERT INTO msg_t VALUES (100);
ROLLBACK;
-- non-transactional inside a transaction that rolls back: still sent
BEGIN;
INSERT INTO msg_t VALUES (101);
SELECT 'msg' FROM pg_logical_emit_message(false, 'app', 'non-transactional in rolled back');
ROLLBACK;
-- non-transactional inside a transaction that commits: sent before it
BEGIN;
INSERT INTO msg_t VALUES (2);
SELECT 'msg' FROM pg_logical_emit_message(false, 'app', 'non-transactional in committed');
COMMIT;

SELECT data FROM pg_logical_slot_get_changes('messages_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

-- with include-lsn and include-xids on: a non-transactional message has
-- lsn but no commit_lsn, seq or ts; a transactional one has them all
BEGIN;
SELECT 'msg' FROM pg_logical_emit_message(false, 'app', 'nt');
SELECT 'msg' FROM pg_logical_emit_message(true, 'app', 'tx');
COMMIT;
SELECT data::jsonb->>'content' AS content,
       ARRAY(SELECT k FROM jsonb_object_keys(data::jsonb) k ORDER BY k) AS fields
  FROM pg_logical_slot_get_changes('messages_slot', NULL, NULL)
 WHERE data::jsonb->>'op' = 'm';

-- text content needing escapes; decoded JSON must give back the original
CREATE TABLE msg_text (name text PRIMARY KEY, content text);
INSERT INTO msg_text VALUES
  ('quotes', 'say "hi" and \back\slash'),
  ('whitespace', E'line1\nline2\r\n\ttabbed'),
  ('control', E'bell\x07 esc\x1b del\x7f unit\x1f'),
  ('unicode', 'é ü ß 日本語 😀 €'),
  ('empty', ''),
  ('json-looking', '{"not":"parsed"}');
SELECT count(*) > 0 AS seen FROM pg_logical_slot_get_changes('messages_slot', NULL, NULL);
SELECT 'msg' FROM msg_text, pg_logical_emit_message(true, 'txt:' || name, content) ORDER BY name;
SELECT data FROM pg_logical_slot_peek_changes('messages_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
SELECT t.name, m.data::jsonb->>'content_encoding' AS encoding,
       m.data::jsonb->>'content' = t.content AS content_matches
  FROM pg_logical_slot_get_changes('messages_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0') m
  JOIN msg_text t ON m.data::jsonb->>'prefix' = 'txt:' || t.name
 ORDER BY t.name;

-- binary content: not valid text, so base64; decoding gives the bytes back
CREATE TABLE msg_bin (name text PRIMARY KEY, content bytea);
INSERT INTO msg_bin VALUES
  ('nul', '\x00'),
  ('nul-inside', '\x61006200630d0a'),
  ('not-utf8', '\xfffe80c0'),
  ('truncated-utf8', '\x61e697a5e6'),
  ('all-bytes', (SELECT string_agg(set_byte('\x00'::bytea, 0, b), ''::bytea ORDER BY b) FROM generate_series(0, 255) b)),
  ('utf8-bytes', convert_to('日本', 'UTF8'));
SELECT count(*) > 0 AS seen FROM pg_logical_slot_get_changes('messages_slot', NULL, NULL);
SELECT 'msg' FROM msg_bin, pg_logical_emit_message(true, 'bin:' || name, content) ORDER BY name;
SELECT 'msg' FROM pg_logical_emit_message(false, 'bin:nontx-nul', '\x0001ff'::bytea);
INSERT INTO msg_t VALUES (3);
SELECT data FROM pg_logical_slot_peek_changes('messages_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0')
 WHERE data::jsonb->>'prefix' IN ('bin:nul', 'bin:nul-inside', 'bin:not-utf8', 'bin:nontx-nul', 'bin:utf8-bytes');
SELECT t.name, m.data::jsonb->>'content_encoding' AS encoding,
       CASE m.data::jsonb->>'content_encoding'
         WHEN 'base64' THEN decode(m.data::jsonb->>'content', 'base64')
         ELSE convert_to(m.data::jsonb->>'content', 'UTF8') END = t.content AS content_matches
  FROM pg_logical_slot_get_changes('messages_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0') m
  JOIN (SELECT * FROM msg_bin UNION ALL SELECT 'nontx-nul', '\x0001ff') t ON m.data::jsonb->>'prefix' = 'bin:' || t.name
 ORDER BY t.name;

-- subtransactions: a transactional message rolled back with its savepoint
-- is dropped; a non-transactional one is sent anyway
BEGIN;
SELECT 'msg' FROM pg_logical_emit_message(true, 'sx', 'top');
SAVEPOINT a;
SELECT 'msg' FROM pg_logical_emit_message(true, 'sx', 'in rolled back subxact');
SELECT 'msg' FROM pg_logical_emit_message(false, 'sx', 'non-transactional in rolled back subxact');
ROLLBACK TO SAVEPOINT a;
SAVEPOINT b;
SELECT 'msg' FROM pg_logical_emit_message(true, 'sx', 'in released subxact');
RELEASE SAVEPOINT b;
COMMIT;
SELECT data FROM pg_logical_slot_get_changes('messages_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

-- message-prefixes: only the listed prefixes (quoted to contain a comma)
BEGIN;
SELECT 'msg' FROM pg_logical_emit_message(true, 'keep', 'k1');
SELECT 'msg' FROM pg_logical_emit_message(true, 'drop', 'd1');
SELECT 'msg' FROM pg_logical_emit_message(true, 'with,comma', 'c1');
SELECT 'msg' FROM pg_logical_emit_message(false, 'keep', 'k2 non-transactional');
SELECT 'msg' FROM pg_logical_emit_message(false, 'drop', 'd2 non-transactional');
SELECT 'msg' FROM pg_logical_emit_message(true, 'kee', 'prefix of a prefix: dropped');
SELECT 'msg' FROM pg_logical_emit_message(true, 'keep2', 'longer prefix: dropped');
COMMIT;
-- a transaction with only filtered-out messages: nothing at all
SELECT 'msg' FROM pg_logical_emit_message(true, 'drop', 'd3 alone');
SELECT data FROM pg_logical_slot_get_changes('messages_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
       'message-prefixes', 'keep,"with,comma"');

-- a non-transactional message sent from a subtransaction reports the
-- top-level xid, like the begin and commit around it
BEGIN;
INSERT INTO msg_t VALUES (9001);
SAVEPOINT a;
INSERT INTO msg_t VALUES (9002);
SELECT 'emitted' FROM pg_logical_emit_message(false, 'subx', 'nt');
RELEASE a;
COMMIT;
WITH ev AS (
  SELECT data::jsonb AS j, n
    FROM pg_logical_slot_get_changes('messages_slot', NULL, NULL, 'message-prefixes', 'subx')
         WITH ORDINALITY AS c(lsn, xid, data, n))
SELECT j->>'op' AS op, j->>'prefix' AS prefix,
       j->>'xid' = (SELECT e.j->>'xid' FROM ev e WHERE e.j->>'op' = 'begin') AS xid_is_toplevel
  FROM ev ORDER BY n;

SELECT 'stop' FROM pg_drop_replication_slot('messages_slot');
DROP TABLE msg_t, msg_text, msg_bin;
