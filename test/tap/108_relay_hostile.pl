# test/tap/108_relay_hostile.pl — the relay (`cdc-relay run`) among hostile
# roles and broken peers (issue 7, items 4 to 8 and SIGHUP; messages from
# /work/spec/issue7.md).  One server (wal_level logical, also listening on
# 127.0.0.1 so that its port can pose as a Kafka broker), one test broker
# (`cdc-relay broker`), kcat to read Kafka back.  Every relay gets
# --topic-prefix cdc.
#
#  (4) search_path hijack.  A non-superuser role, mallory, owns database
#      "shop", its tables and its public schema.  She plants in public a
#      has_table_privilege(regclass, text) (chosen over pg_catalog's (oid,
#      text) by an exact match, whatever the search_path), and public copies,
#      with identical signatures, of the pg_catalog functions a relay may call
#      (current_setting, set_config, pg_logical_emit_message, to_regprocedure,
#      current_database, advisory locks, ...), two operators (< on integer, =
#      on name) and a view public.pg_settings; then, as the database's owner,
#      ALTER DATABASE shop SET search_path = public, pg_catalog, so the copies
#      win.  Each planted object calls public.pwn(), which records the call in
#      public.pwned (with current_user), raises a WARNING with a marker (the
#      server log keeps it even where the INSERT fails, as in a read-only
#      transaction) and tries ALTER ROLE mallory SUPERUSER.  A sanity check as
#      mallory shows the plants are picked up.  The relay, as the superuser,
#      takes a snapshot of shop, streams with --heartbeat-interval 0.5 (a
#      test_decoding probe slot proves heartbeats were emitted) and delivers
#      new rows: afterwards pwned is empty, the server log has no marker,
#      mallory is no superuser, and the rows are in Kafka.
#  (5) Extension schema in foreign hands.  (a) schema cdc_relay owned by
#      mallory: a relay with a snapshot exits 1 naming her and creates no
#      slot.  (b) the schema is the superuser's again, but mallory may CREATE
#      in it and planted the overload cdc_relay.snapshot_row(regclass,
#      record, text, text[]), which an uncast LSN literal resolves to (shown
#      by a query of that form as mallory): the relay exits 1 with "not part
#      of the cdc_relay extension", creates no slot, and the overload never
#      ran.
#  (6) A message Kafka rejects for good: one transaction writes 3 small rows,
#      a 5 MB value into big, 3 more small rows.  The relay (default
#      message.max.bytes) exits 1 within 60 s with one "Kafka rejected a
#      message for good" line naming topic, table, key, size and both size
#      settings; no small row of that transaction is in Kafka twice; the
#      slot's confirmed_flush_lsn stays below the end of its commit (taken
#      from a test_decoding probe slot).  Restarted with -X
#      message.max.bytes=10000000, the relay delivers the 5 MB row and streams
#      on.  Then the backoff: with PostgreSQL stopped, the relay reconnects
#      after 1000, 2000, 4000 ms (not reset by a failed attempt); once the
#      server is back it reconnects by itself and a new row arrives.
#  (SIGHUP) that streaming relay gets SIGHUP: 2 s later it still runs, has
#      logged that the signal was ignored, delivers a new row and exits 0 on
#      SIGTERM.
#  (7) Kafka first: a closed port, the PostgreSQL port (not Kafka) and
#      -X security.protocol=ssl against the plaintext test broker: each run
#      exits 1 within 40 s with "could not reach Kafka at ... within 10 s" and
#      leaves no replication slot behind.
#  (8) Unresponsive PostgreSQL: a listener that accepts TCP connections and
#      never sends a byte.  The relay exits 1 within 30 s with "could not
#      connect to the database: timeout expired"; SIGTERM while it connects
#      ends it within 5 s with status 0; connect_timeout=3 in the connection
#      string is honoured (exit well before the 10 s default).
# The runs of (7) and the first of (8) run side by side to save wall time.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use RelayTest;

my @prefix = ('--topic-prefix', 'cdc');
my $node = logical_node('hostile', "listen_addresses = '127.0.0.1'");
my $broker = start_broker();

# ---- helpers -------------------------------------------------------------------

# SQL as the superuser; in shop with a search_path under which none of
# mallory's plants can run (they would run as the superuser otherwise).
sub pg { return $node->safe_psql('postgres', $_[0]); }

sub shop
{
	return $node->safe_psql('shop', "SET search_path = pg_catalog, public;\n$_[0]");
}

sub as_mallory
{
	return $node->safe_psql('shop', $_[0], extra_params => [ '-U', 'mallory' ]);
}

# The server log from byte $offset on.
sub server_log_since { return slurp_file($node->logfile, $_[0]); }

sub server_log_size { return -s $node->logfile; }

# The names of the cluster's replication slots.
sub slot_names
{
	return sort split /\n/, pg('SELECT slot_name FROM pg_replication_slots');
}

# Slots that exist now and were not in @before.
sub new_slots
{
	my %before = map { $_ => 1 } @_;
	return grep { !$before{$_} } slot_names();
}

# Drop the slots named (a relay that was killed may still hold one briefly).
sub drop_slots
{
	for my $slot (@_)
	{
		wait_until(
			sub {
				pg("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot' AND active") == 0;
			},
			"slot $slot to be released", 30);
		pg("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$slot'");
	}
}

# A TCP port on 127.0.0.1 that nothing listens on (at the time of the call).
sub closed_port
{
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1)
	  or die "could not bind a socket: $!";
	my $port = $s->sockport;
	close($s);
	return $port;
}

# id => number of messages with key {"id":N} in the topic (tombstones left out);
# with $lens, id => value length of the last one instead.
sub kafka_ids
{
	my ($topic, $lens) = @_;
	my %n;
	for my $m (consume($broker, $topic))
	{
		next unless defined $m->{key} && defined $m->{value};
		next unless $m->{key} =~ /^\{"id":(\d+)\}$/;
		if ($lens) { $n{$1} = length($m->{value}); }
		else { $n{$1}++; }
	}
	return \%n;
}

# Waits until every id of @ids has a message in the topic.
sub wait_for_ids
{
	my ($topic, $what, @ids) = @_;
	my @missing;
	my $ok = wait_until(
		sub {
			my $have = kafka_ids($topic);
			@missing = grep { !$have->{$_} } @ids;
			return !@missing;
		},
		$what, 60);
	diag("ids not in $topic: @missing") unless $ok;
	return $ok;
}

# The lines of $text that match $re.
sub lines_matching
{
	my ($text, $re) = @_;
	return grep { $_ =~ $re } split /\n/, $text;
}

# The first few elements of a list, for diagnostics.
sub head_of { my ($n, @l) = @_; return @l > $n ? (@l[ 0 .. $n - 1 ], '...') : @l; }

# like() for a relay's log: on failure shows the log's tail, not all of it.
sub log_like
{
	my ($text, $re, $name) = @_;
	return ok($text =~ $re, $name) || diag("no match for $re; log tail:\n" . tail_lines($text, 8));
}

# "name xN, ..." for a list with repeats, in order of first appearance.
sub summarize
{
	my (%n, @order);
	for (@_) { push @order, $_ unless $n{$_}++; }
	return join(', ', map { $n{$_} > 1 ? "$_ x$n{$_}" : $_ } @order);
}

# The last $n lines of $text.
sub tail_lines
{
	my ($text, $n) = @_;
	my @l = split /\n/, $text;
	return join("\n", @l > $n ? @l[ -$n .. -1 ] : @l);
}

# Runs relays side by side: each {name, conn, args => [...], limit => seconds}
# is started at once; each must end within its limit (from the common start),
# else it is killed.  Returns name => {status (undef when killed), secs, log}.
sub run_side_by_side
{
	my (@runs) = @_;
	my $t0 = time();
	my %proc = map {
		$_->{name} => start_relay($_->{conn}, $_->{broker}, { name => "relay_$_->{name}" }, @{ $_->{args} })
	} @runs;
	my %res;
	for my $run (sort { $a->{limit} <=> $b->{limit} } @runs)
	{
		my $p = $proc{ $run->{name} };
		my $left = $t0 + $run->{limit} - time();
		my $status = $p->finish($left > 0.1 ? $left : 0.1);
		$res{ $run->{name} } = { status => $status, log => $p->log_content };
	}
	# how long each ran: from its first log line to its last (the processes
	# are reaped in turn, so the time of our waitpid would be late)
	for my $name (keys %res)
	{
		my @stamps = $res{$name}{log} =~ /^\d{4}-\d\d-\d\d (\d\d):(\d\d):(\d\d(?:\.\d+)?) /mg;
		$res{$name}{secs} = undef;
		next unless @stamps >= 6;
		my $first = $stamps[0] * 3600 + $stamps[1] * 60 + $stamps[2];
		my $last = $stamps[-3] * 3600 + $stamps[-2] * 60 + $stamps[-1];
		$last += 86400 if $last < $first;
		$res{$name}{secs} = $last - $first;
	}
	return \%res;
}

# ---- setup -------------------------------------------------------------------------

pg(q{
CREATE ROLE mallory LOGIN;
CREATE DATABASE shop OWNER mallory;
CREATE EXTENSION cdc_relay;
CREATE TABLE small (id int PRIMARY KEY, v text NOT NULL);
CREATE TABLE big (id int PRIMARY KEY, v text NOT NULL);
});
shop('CREATE EXTENSION cdc_relay;');

# mallory's database: her tables, a record of every planted call, and the
# plants.  pwn() keeps its own search_path so that it cannot call a plant.
as_mallory(q{
CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO public.items SELECT g, 'seed ' || g FROM generate_series(1, 5) g;
CREATE TABLE public.pwned (fn text NOT NULL, by_role text NOT NULL,
                           at timestamptz NOT NULL DEFAULT clock_timestamp());
GRANT INSERT ON public.pwned TO PUBLIC;

CREATE FUNCTION public.pwn(fn text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE WARNING 'PLANTED-CODE-RAN: % as role %', fn, current_user;
    BEGIN
        INSERT INTO public.pwned (fn, by_role) VALUES (fn, current_user);
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    BEGIN
        ALTER ROLE mallory SUPERUSER;
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    RETURN true;
END
$$;

-- pg_catalog's has_table_privilege takes oid: an exact match on regclass wins
CREATE FUNCTION public.has_table_privilege(rel regclass, priv text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.pwn('has_table_privilege(regclass,text)');
    RETURN pg_catalog.has_table_privilege(rel::pg_catalog.oid, priv);
END
$$;

-- public copies of pg_catalog functions (every non-set-returning,
-- non-variadic overload without pseudo-type arguments) with identical
-- signatures: they win where public comes first in search_path
DO $do$
DECLARE
    f record;
    call text;
BEGIN
    FOR f IN
        SELECT p.proname, p.pronargs,
               pg_catalog.pg_get_function_identity_arguments(p.oid) AS args,
               p.prorettype::pg_catalog.regtype::pg_catalog.text AS ret,
               p.oid::pg_catalog.regprocedure::pg_catalog.text AS sig
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace
           AND p.prokind = 'f' AND NOT p.proretset AND p.provariadic = 0
           AND p.proname = ANY (ARRAY[
                 'current_setting', 'set_config', 'pg_logical_emit_message',
                 'to_regprocedure', 'to_regproc', 'to_regclass', 'to_regnamespace',
                 'to_regrole', 'to_regtype', 'has_table_privilege',
                 'has_schema_privilege', 'has_function_privilege',
                 'has_database_privilege', 'pg_has_role', 'current_database',
                 'current_schema', 'pg_try_advisory_lock', 'pg_advisory_lock',
                 'pg_advisory_unlock', 'pg_advisory_unlock_all', 'hashtext',
                 'hashtextextended', 'pg_backend_pid', 'pg_current_wal_lsn',
                 'pg_current_wal_insert_lsn', 'pg_current_wal_flush_lsn',
                 'pg_is_in_recovery', 'version', 'quote_ident', 'quote_literal',
                 'format', 'pg_get_userbyid', 'pg_encoding_to_char',
                 'pg_drop_replication_slot', 'pg_terminate_backend',
                 'pg_cancel_backend', 'pg_export_snapshot', 'txid_current',
                 'pg_current_xact_id', 'pg_get_function_identity_arguments',
                 'pg_describe_object', 'format_type', 'lower', 'upper', 'length',
                 'substr', 'replace', 'pg_reload_conf', 'pg_sleep'])
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type t
                            WHERE (t.oid = ANY (p.proargtypes::pg_catalog.oid[]) OR t.oid = p.prorettype)
                              AND t.typtype = 'p' AND t.oid <> 'pg_catalog.void'::pg_catalog.regtype)
    LOOP
        SELECT coalesce(pg_catalog.string_agg('$' || i, ', '), '') INTO call
          FROM pg_catalog.generate_series(1, f.pronargs) i;
        EXECUTE pg_catalog.format(
            'CREATE FUNCTION public.%I(%s) RETURNS %s LANGUAGE plpgsql AS %L',
            f.proname, f.args, f.ret,
            pg_catalog.format('BEGIN PERFORM public.pwn(%L); %s pg_catalog.%I(%s); END',
                              f.sig, CASE WHEN f.ret = 'void' THEN 'PERFORM' ELSE 'RETURN' END,
                              f.proname, call));
    END LOOP;
END
$do$;

CREATE FUNCTION public.pwn_int4lt(integer, integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.pwn('operator <(integer,integer)');
    RETURN $1 OPERATOR(pg_catalog.<) $2;
END
$$;
CREATE OPERATOR public.< (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.pwn_int4lt);

CREATE FUNCTION public.pwn_nameeq(name, name) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.pwn('operator =(name,name)');
    RETURN $1 OPERATOR(pg_catalog.=) $2;
END
$$;
CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = name, FUNCTION = public.pwn_nameeq);

CREATE VIEW public.pg_settings AS
    SELECT s.* FROM pg_catalog.pg_settings s WHERE (SELECT public.pwn('view public.pg_settings'));

ALTER DATABASE shop SET search_path = public, pg_catalog;
});

my $n_plants = shop(q{SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace});
note "mallory planted $n_plants functions in shop's public schema";

# Sanity: with the database's search_path the plants are what a query gets.
as_mallory(q{SELECT current_setting('wal_level'), has_table_privilege('public.items'::regclass, 'SELECT'),
                    1 < 2, current_database(), rolname = current_user,
                    (SELECT count(*) FROM pg_settings)
               FROM pg_roles LIMIT 1});
is( shop(q{SELECT string_agg(DISTINCT fn || ' by ' || by_role, ', ' ORDER BY fn || ' by ' || by_role) FROM public.pwned}),
	'current_database() by mallory, current_setting(text) by mallory, '
	  . 'has_table_privilege(regclass,text) by mallory, operator <(integer,integer) by mallory, '
	  . 'operator =(name,name) by mallory, view public.pg_settings by mallory',
	'sanity: under shop\'s search_path, unqualified calls run mallory\'s plants')
  or diag(shop('SELECT fn, by_role FROM public.pwned'));
shop('TRUNCATE public.pwned');

# Records of planted code that ran (as anyone but mallory herself), from the
# table and from the server log since $offset.
sub planted_runs
{
	my ($offset) = @_;
	my @rows = split /\n/, shop(q{SELECT fn || ' as ' || by_role FROM public.pwned WHERE by_role <> 'mallory' ORDER BY at});
	my @logged = map { /PLANTED-CODE-RAN: (.*)/ ? "$1 (server log)" : () }
	  lines_matching(server_log_since($offset), qr/PLANTED-CODE-RAN: .* as role (?!mallory\b)/);
	return (@rows, @logged);
}

sub mallory_is_superuser
{
	return shop(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}) eq 't';
}

# Undo what a relay that ran the plants did, so that the next case starts clean.
sub reset_mallory
{
	shop(q{ALTER ROLE mallory NOSUPERUSER; TRUNCATE public.pwned;});
}

# ---- (4) search_path hijack ---------------------------------------------------------

{
	shop(q{SELECT pg_create_logical_replication_slot('hb_probe', 'test_decoding')});
	my $offset = server_log_size();
	my $relay = start_relay($node, $broker, { dbname => 'shop', name => 'relay_hijack' },
		@prefix, '-S', 'hijack', '--heartbeat-interval', '0.5');
	ok($relay->wait_for_log(qr/streaming from slot "hijack"/, 90),
		'(4) the relay snapshots shop and streams as the superuser');
	shop(q{INSERT INTO public.items SELECT g, 'new ' || g FROM generate_series(6, 10) g});
	ok(wait_for_ids('cdc.public.items', 'shop\'s rows in Kafka', 1 .. 10),
		'(4) snapshot rows and new rows of shop arrive in Kafka');
	ok( wait_until(
			sub {
				my @hb = lines_matching(
					shop(q{SELECT data FROM pg_logical_slot_peek_changes('hb_probe', NULL, NULL)}),
					qr/prefix: cdc_relay\.heartbeat/);
				return @hb >= 2;
			},
			'two heartbeats of the relay in shop', 60),
		'(4) the relay emitted heartbeats in shop (its heartbeat connection ran)');
	is($relay->stop, 0, '(4) the relay exits 0 on SIGTERM');
	shop(q{SELECT pg_drop_replication_slot('hb_probe')});

	my @ran = planted_runs($offset);
	is(scalar(@ran), 0, '(4) none of mallory\'s planted functions, operators or views ran in the relay\'s sessions')
	  or diag('planted code that ran: ' . summarize(@ran));
	ok(!mallory_is_superuser(), '(4) mallory is still no superuser');
	reset_mallory();
	drop_slots('hijack');
}

# ---- (5) the extension's schema in foreign hands -------------------------------------

{
	shop('ALTER SCHEMA cdc_relay OWNER TO mallory');
	my @before = slot_names();
	my $offset = server_log_size();
	my ($status, $out, $err) = run_relay($node, $broker, { dbname => 'shop', name => 'relay_schema_owner', timeout => 60 },
		@prefix, '-S', 'own_a', '--snapshot', 'initial-only');
	is($status, 1, '(5a) schema cdc_relay owned by mallory: the relay exits 1');
	log_like($err, qr/schema cdc_relay is owned by role "mallory"/, '(5a) ... naming the schema\'s owner');
	my @new = new_slots(@before);
	is(scalar(@new), 0, '(5a) ... and creates no slot') or diag("new slots: @new");
	my @ran = planted_runs($offset);
	note('(5a) planted code that ran: ' . summarize(@ran)) if @ran;
	shop('ALTER SCHEMA cdc_relay OWNER TO CURRENT_USER');
	reset_mallory();
	drop_slots(@new);
}

{
	shop('GRANT CREATE ON SCHEMA cdc_relay TO mallory');
	as_mallory(q{
CREATE FUNCTION cdc_relay.snapshot_row(rel regclass, r record, lsn text, options text[] DEFAULT '{}')
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.pwn('cdc_relay.snapshot_row(regclass,record,text,text[])');
    RETURN cdc_relay.snapshot_row(rel, r, lsn::pg_catalog.pg_lsn, options);
END
$$;
});
	# the call as the relay wrote it before issue 7: an uncast LSN literal
	as_mallory(q{SELECT cdc_relay.snapshot_row('public.items'::regclass, t.*, '0/0', '{}'::text[])
	             FROM public.items t LIMIT 1});
	is(shop(q{SELECT string_agg(fn, ', ') FROM public.pwned}),
		'cdc_relay.snapshot_row(regclass,record,text,text[])',
		'(5b) sanity: an uncast LSN literal resolves to mallory\'s snapshot_row overload');
	reset_mallory();

	my @before = slot_names();
	my $offset = server_log_size();
	my ($status, $out, $err) = run_relay($node, $broker, { dbname => 'shop', name => 'relay_foreign_fn', timeout => 60 },
		@prefix, '-S', 'own_b', '--snapshot', 'initial-only');
	is($status, 1, '(5b) a foreign snapshot_row overload in schema cdc_relay: the relay exits 1');
	log_like($err, qr/not part of the cdc_relay extension/, '(5b) ... saying the function is not part of the extension');
	my @new = new_slots(@before);
	is(scalar(@new), 0, '(5b) ... and creates no slot') or diag("new slots: @new");
	my @ran = planted_runs($offset);
	is(scalar(@ran), 0, '(5b) the overload never ran in the relay\'s sessions')
	  or diag('planted code that ran: ' . summarize(@ran));
	ok(!mallory_is_superuser(), '(5b) mallory is still no superuser');
	as_mallory(q{DROP FUNCTION cdc_relay.snapshot_row(regclass, record, text, text[])});
	shop('REVOKE CREATE ON SCHEMA cdc_relay FROM mallory');
	reset_mallory();
	drop_slots(@new);
}

# ---- (6) a message Kafka rejects for good ------------------------------------------------

my $big_value_len = 5 * 1024 * 1024;
my $relay = start_relay($node, $broker, { name => 'relay_big' }, @prefix, '-S', 'big');
$relay->wait_for_log(qr/streaming from slot "big"/, 90)
  or BAIL_OUT('the relay on slot "big" did not start streaming');
pg(q{SELECT pg_create_logical_replication_slot('probe', 'test_decoding')});
my $xid = pg(qq{BEGIN;
INSERT INTO small VALUES (1, 'before'), (2, 'before'), (3, 'before');
INSERT INTO big VALUES (1, repeat('x', $big_value_len));
INSERT INTO small VALUES (4, 'after'), (5, 'after'), (6, 'after');
SELECT pg_current_xact_id();
COMMIT;});
my ($commit_end) = map { /^COMMIT $xid\|(.*)$/ ? ($1) : () } split /\n/,
  pg(q{SELECT data, lsn FROM pg_logical_slot_peek_changes('probe', NULL, NULL, 'include-xids', '1')
       WHERE data LIKE 'COMMIT %'});
pg(q{SELECT pg_drop_replication_slot('probe')});
ok(defined $commit_end, "(6) the big transaction ($xid) committed; its commit record ends at " . ($commit_end // '?'));
{
	my $status = $relay->finish(60);
	is($status, 1, '(6) a 5 MB message over message.max.bytes: the relay exits 1 within 60 s');
	my $log = $relay->log_content;
	my @rejected = lines_matching($log, qr/Kafka rejected a message for good/);
	is(scalar(@rejected), 1, '(6) ... with one "rejected for good" error (no loop)')
	  or diag(scalar(lines_matching($log, qr/reconnecting in/)) . ' "reconnecting in" lines, '
		  . scalar(lines_matching($log, qr/ERROR/)) . ' ERROR lines; first ones: '
		  . join("\n", head_of(4, lines_matching($log, qr/ERROR/))));
	my $line = $rejected[0] // '';
	like($line, qr/Kafka rejected a message for good: topic cdc\.public\.big, table public\.big, key \{"id":1\}, \d+ bytes/,
		'(6) ... naming topic, table, key and size');
	my ($bytes) = $line =~ /, (\d+) bytes/;
	cmp_ok($bytes // 0, '>=', $big_value_len, '(6) ... the size is that of the message (at least the 5 MB value)');
	like($line, qr/message\.max\.bytes/, '(6) ... and the producer setting message.max.bytes');
	like($line, qr/max\.message\.bytes/, '(6) ... and the topic setting max.message.bytes');
	my $ids = kafka_ids('cdc.public.small');
	my @twice = grep { ($ids->{$_} // 0) > 1 } 1 .. 6;
	is(scalar(@twice), 0, '(6) no small row of that transaction is in Kafka more than once')
	  or diag(join(', ', map { "id $_: $ids->{$_} copies" } @twice));
	my $confirmed = confirmed_flush($node, 'big');
	ok(lsn_num($confirmed) && lsn_cmp($confirmed, $commit_end) < 0,
		"(6) the slot's confirmed_flush_lsn ($confirmed) stays below the end of the transaction's commit ($commit_end)");
}

$relay = start_relay($node, $broker, { name => 'relay_big_allowed' }, @prefix, '-S', 'big',
	'-X', 'message.max.bytes=10000000');
ok( wait_until(sub { (kafka_ids('cdc.public.big', 1)->{1} // 0) > $big_value_len },
		'the 5 MB row in Kafka', 90),
	'(6) restarted with -X message.max.bytes=10000000: the 5 MB row arrives in Kafka');
ok(wait_for_ids('cdc.public.small', 'the small rows of the big transaction', 1 .. 6),
	'(6) ... with the small rows of its transaction');
pg(q{INSERT INTO small VALUES (7, 'later')});
ok(wait_for_ids('cdc.public.small', 'a later row', 7), '(6) ... and the relay streams on');
ok(wait_for_confirmed($node, 'big', pg('SELECT pg_current_wal_insert_lsn()')),
	'(6) ... confirming past them');
is($relay->stop, 0, '(6) the relay exits 0 on SIGTERM');

# The backoff of transient failures: PostgreSQL goes away, and each reconnect that
# fails doubles the wait (a successful one that gets nothing through does not reset
# it).  Kafka being down is not such a failure: deliveries never time out, the relay
# waits (test 104).
# (with the raised limit: after the server restart PostgreSQL 15 resends from the slot's
# last saved position, which can be before the 5 MB row)
$relay = start_relay($node, $broker, { name => 'relay_backoff' }, @prefix, '-S', 'big',
	'--heartbeat-interval', '0', '-X', 'message.max.bytes=10000000');
$relay->wait_for_log(qr/streaming from slot "big"/, 90)
  or BAIL_OUT('the relay on slot "big" did not start streaming again');
$node->stop('fast');
{
	my @waits;
	wait_until(
		sub {
			@waits = $relay->log_content =~ /reconnecting in (\d+) ms/g;
			return @waits >= 3 || !$relay->alive;
		},
		'three reconnects', 90);
	is(join(', ', map { $_ // 'none' } @waits[ 0 .. 2 ]), '1000, 2000, 4000',
		'(6) while PostgreSQL is down the relay reconnects after 1000, 2000, 4000 ms')
	  or diag('reconnect waits: ' . join(', ', map { $_ // 'none' } @waits));
}
$node->start;
pg(q{INSERT INTO small VALUES (100, 'after the server came back')});
ok(wait_for_ids('cdc.public.small', 'the row written after the server came back', 100),
	'(6) once the server is back, the relay reconnects by itself and the new row arrives');
ok($relay->alive, '(6) the relay keeps running');

# ---- SIGHUP ----------------------------------------------------------------------------------

if (!$relay->alive)
{
	$relay = start_relay($node, $broker, { name => 'relay_sighup' }, @prefix, '-S', 'big', '-X', 'message.max.bytes=10000000');
	$relay->wait_for_log(qr/streaming from slot "big"/, 90);
}
$relay->kill('HUP');
sleep(2);
ok($relay->alive, '(SIGHUP) the relay still runs 2 s after SIGHUP');
log_like($relay->log_content,
	qr/SIGHUP received and ignored: cdc-relay reads its settings only at start; restart it to apply changes/,
	'(SIGHUP) ... and logged that it ignored it');
pg(q{INSERT INTO small VALUES (200, 'after SIGHUP')});
ok($relay->alive && wait_for_ids('cdc.public.small', 'a row written after SIGHUP', 200), '(SIGHUP) ... and streams on');
is($relay->stop, 0, '(SIGHUP) ... and exits 0 on SIGTERM');

# ---- (7) Kafka first, and (8) a server that never answers ------------------------------

# Accepts TCP connections and never sends a byte; prints its port, then
# "accepted" per connection.
my $listener = start_process(
	[
		'perl', '-MIO::Socket::INET', '-e', q{
$| = 1;
my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 64, ReuseAddr => 1)
  or die "listen: $!";
print "port ", $l->sockport, "\n";
my @keep;
while (my $c = $l->accept) { push @keep, $c; print "accepted\n"; }
}
	],
	name => 'silent_listener');
$listener->wait_for_log(qr/^port \d+$/m, 30) or BAIL_OUT('the silent listener did not start');
my ($silent_port) = $listener->log_content =~ /^port (\d+)$/m;
my $silent = "host=127.0.0.1 port=$silent_port dbname=x user=y";
sub accepted { return scalar(() = $listener->log_content =~ /^accepted$/mg); }

{
	my @before = slot_names();
	my $closed = closed_port();
	my $res = run_side_by_side(
		{ name => 'k7_closed', conn => $node, broker => "127.0.0.1:$closed", limit => 40,
		  args => [ @prefix, '-S', 'k7_closed' ] },
		{ name => 'k7_pgport', conn => $node, broker => '127.0.0.1:' . $node->port, limit => 40,
		  args => [ @prefix, '-S', 'k7_pgport' ] },
		{ name => 'k7_ssl', conn => $node, broker => $broker, limit => 40,
		  args => [ @prefix, '-S', 'k7_ssl', '-X', 'security.protocol=ssl' ] },
		{ name => 'k8_silent', conn => $silent, broker => $broker, limit => 30,
		  args => [ @prefix, '-S', 'k8_silent' ] });
	for my $case ([ 'k7_closed', "a closed port (127.0.0.1:$closed)" ],
		[ 'k7_pgport', 'the PostgreSQL port' ],
		[ 'k7_ssl', '-X security.protocol=ssl against a plaintext listener' ])
	{
		my ($name, $what) = @$case;
		my $r = $res->{$name};
		is($r->{status}, 1, "(7) Kafka at $what: the relay exits 1 within 40 s");
		log_like($r->{log}, qr/could not reach Kafka at \S+ within 10 s/, "(7) ... saying it could not reach Kafka");
	}
	my @new = new_slots(@before);
	is(scalar(@new), 0, '(7) no replication slot is left behind') or diag("new slots: @new");
	drop_slots(@new);

	my $r = $res->{k8_silent};
	is($r->{status}, 1, '(8) a server that never answers: the relay exits 1 within 30 s');
	log_like($r->{log}, qr/could not connect to the database.*timeout expired/,
		'(8) ... with "could not connect to the database: timeout expired"');
	note('(8) it took ' . ($r->{secs} // '?') . ' s by its log (default connect_timeout 10 s)');
}

{
	my $seen = accepted();
	my $t0 = time();
	my $relay = start_relay($silent, $broker, { name => 'relay_k8_term' }, @prefix, '-S', 'k8_term');
	ok(wait_until(sub { accepted() > $seen }, 'the relay to connect to the silent server', 30),
		'(8) the relay connects to the silent server');
	my $left = $t0 + 2 - time();
	sleep($left) if $left > 0;
	ok($relay->alive, '(8) ... and is still connecting 2 s after its start');
	$relay->kill('TERM');
	is($relay->finish(5), 0, '(8) SIGTERM while it connects: the relay exits 0 within 5 s');
	my $log = $relay->log_content;
	log_like($log, qr/stopping at the operator's request/, '(8) ... logging that it stops at the operator\'s request');
	log_like($log, qr/exiting with status 0/, '(8) ... and "exiting with status 0"');
}

{
	my $res = run_side_by_side(
		{ name => 'k8_timeout3', conn => "$silent connect_timeout=3", broker => $broker, limit => 30,
		  args => [ @prefix, '-S', 'k8_timeout3' ] });
	my $r = $res->{k8_timeout3};
	is($r->{status}, 1, '(8) connect_timeout=3: the relay exits 1');
	log_like($r->{log}, qr/could not connect to the database.*timeout expired/, '(8) ... with "timeout expired"');
	ok(defined $r->{secs} && $r->{secs} < 9,
		'(8) ... after about 3 s, not the 10 s default (' . ($r->{secs} // '?') . ' s by its log)');
}

$listener->kill('KILL');
is($broker->stop, 0, 'the broker exits 0 on SIGTERM');
done_testing();
