# test/tap/120_slot_health.pl: slot health inside PostgreSQL (issue 10, part 3):
# every cause of cdc_relay.slot_health produced for real and named the same by
# the view and by `cdc-relay status`, which also says whether a relay holds
# the slot and (with -b) what the state topic records.
#
# Node "health": cdc_relay preloaded (the WAL sampler, one sample a second),
# cdc_relay.behind_seconds = 3; a relay on slot "health" with the test broker.
#  (a) quiet, relay running: 'idle'; status exits 0, names the relay's
#      server process as the lock holder, and with -b shows the state record
#      (snapshot complete, confirmed_lsn at or past the slot's); --json parses;
#      the rate is 'sampled'.
#  (b) a transaction with a write left open in another session while the
#      relay streams other writes: 'old transaction', the detail names that
#      session's pid; after COMMIT: 'idle' again.
#  (c) the relay paused with SIGSTOP while rows are written: 'behind' (and
#      status exits 0: a connected consumer); after SIGCONT: 'idle'.
#  (d) the relay stopped: 'not connected', detail "last seen N s ago";
#      status exits 1 and says no relay holds the slot.
#  (e) a missing slot: status exits 1; bad usage: 2; no server: 3.
# Node "lost": 1 MB WAL segments, max_slot_wal_keep_size = 1MB, no preload:
#  (f) seconds_until_invalidated is safe_wal_size / rate while the slot has
#      WAL reserved; rate_source 'since stats reset'.
#  (g) WAL pushed past the limit with no consumer: 'lost'; status exits 1
#      (also without the extension: from pg_replication_slots, with the note
#      that the extension gives the rest).
#  (h) one truth for prerequisites: for output_plugin_libraries without
#      cdc_relay and for a role without REPLICATION, the relay prints exactly
#      the fix cdc_relay.check_setup() gives, with the extension installed
#      (the relay asks it) and without it (the relay's own check).
use strict;
use warnings;

use JSON::PP;
use Time::HiRes qw(sleep time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use RelayTest;

my $node = logical_node('health', "shared_preload_libraries = 'cdc_relay'",
	'cdc_relay.wal_sample_interval = 1', 'cdc_relay.behind_seconds = 3');
$node->safe_psql('postgres', q{CREATE EXTENSION cdc_relay;
CREATE TABLE h (id int PRIMARY KEY, v text NOT NULL);
CREATE TABLE other (id serial PRIMARY KEY, v text NOT NULL);
INSERT INTO h SELECT g, 'seed' FROM generate_series(1, 100) g;});
my $broker = start_broker();

# the view's row for a slot: {column => value}
sub health
{
	my ($n, $slot) = @_;
	my $json = $n->safe_psql('postgres',
		"SELECT row_to_json(s) FROM cdc_relay.slot_health s WHERE slot_name = '$slot'");
	return $json eq '' ? undef : decode_json($json);
}

# wait until the view names $cause for $slot; returns the row (or undef)
sub wait_cause
{
	my ($n, $slot, $cause, $timeout) = @_;
	my $row;
	my $ok = wait_until(
		sub {
			$row = health($n, $slot);
			return 1 if $row && $row->{cause} eq $cause;
			sleep(0.4);
			return 0;
		},
		"cause '$cause' of slot $slot", $timeout // 60);
	diag('last row: ' . encode_json($row // {})) unless $ok;
	return $ok ? $row : undef;
}

# cdc-relay status ...: (exit status, stdout, stderr)
sub status
{
	my (@args) = @_;
	return run_relay(undef, undef, { exact => 1, name => 'status', timeout => 60 }, 'status', @args);
}

my $conn = $node->connstr('postgres');
my $relay = start_relay($node, $broker, '-S', 'health', '--tables', 'public.h,public.other');
ok($relay->wait_for_log(qr/streaming from slot/), 'relay streams from slot "health"')
  or BAIL_OUT('the relay did not start');
my $relay_pid = $node->safe_psql('postgres', q{SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'health'});

# (a) idle
$node->safe_psql('postgres', q{INSERT INTO h VALUES (101, 'streamed')});
ok(wait_for_confirmed($node, 'health', $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()'), 60),
	'(a) the relay confirmed the last write');
my $row = wait_cause($node, 'health', 'idle');
ok($row, '(a) quiet with the relay running: cause idle');
is($row->{active}, JSON::PP::true, '(a) active');
is($row->{active_pid}, $relay_pid, '(a) active_pid is the walsender');
is($row->{rate_source}, 'sampled', '(a) the WAL rate is sampled (cdc_relay preloaded)');
ok($node->safe_psql('postgres', 'SELECT count(*) >= 2 FROM cdc_relay.wal_samples()') eq 't',
	'(a) the sampler has samples');
{
	my $later = $node->safe_psql('postgres',
		q{SELECT (pg_current_wal_insert_lsn() - restart_lsn)::int8 FROM pg_replication_slots WHERE slot_name = 'health'});
	ok($row->{retained_wal_bytes} > 0 && $row->{retained_wal_bytes} <= $later,
		'(a) retained_wal_bytes is the WAL since restart_lsn (no more than a moment later)')
	  or diag("view $row->{retained_wal_bytes}, later $later");
}
is($row->{seconds_until_invalidated}, undef, '(a) no time until invalidation without max_slot_wal_keep_size');
{
	my ($rc, $out, $err) = status('-d', $conn, '-S', 'health', '-b', $broker->{bootstrap}, '--topic-prefix', 'cdc');
	is($rc, 0, '(a) status exits 0 for an idle slot') or diag($err);
	like($out, qr/^slot "health" \(plugin cdc_relay, database postgres\): idle$/m, '(a) status names the cause');
	# the only advisory lock on the server: the relay's on its slot
	my $guard_pid = $node->safe_psql('postgres',
		q{SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2});
	like($out, qr/^relay: running \(holds the slot's lock: server process $guard_pid, application /m,
		'(a) status names the server process that holds the slot\'s lock');
	like($out, qr/^state \(cdc\.__state\): snapshot complete at [0-9A-F]+\/[0-9A-F]+, confirmed_lsn [0-9A-F]+\/[0-9A-F]+$/m,
		'(a) with -b: the state record');
	($rc, $out, $err) = status('-d', $conn, '-S', 'health', '-b', $broker->{bootstrap}, '--topic-prefix', 'cdc', '--json');
	is($rc, 0, '(a) status --json exits 0');
	my $j = eval { decode_json($out) };
	ok($j, '(a) --json is JSON') or diag($out);
	is($j->{slot}{cause}, 'idle', '(a) --json: cause');
	is($j->{relay}{running}, JSON::PP::true, '(a) --json: relay running');
	is($j->{relay}{pid}, $guard_pid, '(a) --json: the lock holder\'s pid');
	is($j->{state}{snapshot}, 'complete', '(a) --json: snapshot complete');
	ok(lsn_cmp($j->{state}{confirmed_lsn}, $j->{slot}{confirmed_flush_lsn}) >= 0,
		'(a) --json: the state topic\'s confirmed_lsn is at or past the slot\'s confirmed_flush_lsn');
	is($j->{healthy}, JSON::PP::true, '(a) --json: healthy');
}

# (b) an old transaction
{
	my $s = $node->background_psql('postgres');
	my $pid = $s->query_safe(q{BEGIN; INSERT INTO h VALUES (1000, 'open'); SELECT pg_backend_pid();});
	chomp $pid;
	# other writes keep the relay confirming past the open transaction's start
	$row = undef;
	ok(wait_until(
			sub {
				$node->safe_psql('postgres', q{INSERT INTO other (v) VALUES ('tick')});
				$row = health($node, 'health');
				return 1 if $row->{cause} eq 'old transaction';
				sleep(0.5);
				return 0;
			},
			'cause old transaction', 60),
		'(b) a transaction with a write left open: cause old transaction')
	  or diag(encode_json($row // {}));
	like($row->{cause_detail} // '', qr/server process $pid .*has had transaction \d+ open since/,
		'(b) the detail names the session holding it');
	my ($rc, $out) = status('-d', $conn, '-S', 'health');
	like($out, qr/^slot "health" .*: old transaction$/m, '(b) status names the cause');
	like($out, qr/cause detail: +server process $pid /, '(b) status shows the detail');
	is($rc, 0, '(b) status exits 0 (a consumer is connected)');
	$s->query_safe('COMMIT');
	$s->quit;
	ok(wait_cause($node, 'health', 'idle'), '(b) after COMMIT: idle again');
}

# (c) behind: the relay paused while rows are written
{
	$relay->kill('STOP');
	my $t0 = time();
	$node->safe_psql('postgres', q{INSERT INTO h SELECT g, repeat('b', 200) FROM generate_series(2001, 4000) g});
	$row = wait_cause($node, 'health', 'behind', 45);
	ok($row, '(c) relay paused (SIGSTOP) while rows are written: cause behind');
	ok($row && $row->{active}, '(c) the slot is still active');
	like($row->{cause_detail} // '', qr/^\d+ bytes not confirmed; confirmed position unchanged for \d+ s$/,
		'(c) the detail says how much and for how long');
	my ($rc, $out) = status('-d', $conn, '-S', 'health');
	like($out, qr/^slot "health" .*: behind$/m, '(c) status names the cause');
	is($rc, 0, '(c) status exits 0 (a consumer is connected)');
	$relay->kill('CONT');
	note(sprintf('(c) relay paused for %.1f s', time() - $t0));
	ok(wait_for_confirmed($node, 'health', $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()'), 60),
		'(c) after SIGCONT the relay confirms the rows');
	ok(wait_cause($node, 'health', 'idle'), '(c) and the slot is idle again');
}

# (d) not connected
{
	is($relay->stop, 0, '(d) relay exits 0 on SIGTERM');
	$row = wait_cause($node, 'health', 'not connected', 30);
	ok($row, '(d) relay stopped: cause not connected');
	sleep(2);
	$row = health($node, 'health');
	like($row->{cause_detail}, qr/^no consumer connected; last seen ([1-9]\d*) s ago$/,
		'(d) the detail says when a consumer was last seen');
	my ($rc, $out) = status('-d', $conn, '-S', 'health');
	is($rc, 1, '(d) status exits 1 for a slot without a consumer');
	like($out, qr/^slot "health" .*: not connected \(unhealthy\)$/m, '(d) status names the cause');
	like($out, qr/^relay: not running/m, '(d) status: no relay holds the slot');
}

# (e) exit statuses
{
	my ($rc, $out, $err) = status('-d', $conn, '-S', 'no_such_slot');
	is($rc, 1, '(e) a missing slot: exit 1');
	like($out, qr/slot "no_such_slot": does not exist/, '(e) and says so');
	($rc, $out, $err) = status('-S', 'health');
	is($rc, 2, '(e) no -d: exit 2');
	like($err, qr/no database given/, '(e) with the reason');
	($rc, $out, $err) = status('-d', $conn, '-b', $broker->{bootstrap});
	is($rc, 2, '(e) -b without --topic-prefix: exit 2');
	($rc, $out, $err) = status('-d', 'host=/nonexistent port=1 dbname=postgres connect_timeout=2', '-S', 'health');
	is($rc, 3, '(e) no server: exit 3');
	like($err, qr/could not connect to the database/, '(e) with the reason');
}

# (f), (g): a slot that loses its WAL, on a node without the preload
my $small = PostgreSQL::Test::Cluster->new('lost');
$small->init(allows_streaming => 'logical', extra => ['--wal-segsize=1']);
$small->append_conf('postgresql.conf', "output_plugin_libraries = 'pgoutput, test_decoding, cdc_relay'\n"
	  . "max_slot_wal_keep_size = 1MB\n");
$small->start;
my $small_conn = $small->connstr('postgres');
$small->safe_psql('postgres', q{CREATE EXTENSION cdc_relay;
SELECT pg_create_logical_replication_slot('doomed', 'cdc_relay');
SELECT pg_logical_emit_message(false, 'filler', repeat('x', 100000));});
{
	$row = health($small, 'doomed');
	is($row->{rate_source}, 'since stats reset', '(f) without the preload the rate comes from pg_stat_wal');
	ok($row->{wal_rate_bytes_per_s} > 0, '(f) and WAL was written');
	my $expect = ($row->{safe_wal_size} < 0 ? 0 : $row->{safe_wal_size}) / $row->{wal_rate_bytes_per_s};
	ok(defined $row->{seconds_until_invalidated}
		  && abs($row->{seconds_until_invalidated} - $expect) <= 1e-6 * $expect + 1e-6,
		'(f) seconds_until_invalidated = safe_wal_size / rate')
	  or diag(encode_json($row));
	is($row->{cause}, 'not connected', '(f) no consumer: not connected');
}
ok(wait_until(sub {
	$small->safe_psql('postgres', q{SELECT pg_logical_emit_message(false, 'filler', repeat('x', 300000));
SELECT pg_switch_wal();
CHECKPOINT;});
	$small->safe_psql('postgres', q{SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'doomed'}) eq 'lost' },
	'the slot to lose its WAL', 60),
	'(g) WAL pushed past max_slot_wal_keep_size: wal_status lost');
{
	$row = health($small, 'doomed');
	is($row->{cause}, 'lost', '(g) cause lost');
	my ($rc, $out) = status('-d', $small_conn, '-S', 'doomed');
	is($rc, 1, '(g) status exits 1 for a lost slot');
	like($out, qr/^slot "doomed" .*: lost \(unhealthy\)$/m, '(g) status names the cause');
	$small->safe_psql('postgres', 'DROP EXTENSION cdc_relay');
	($rc, $out) = status('-d', $small_conn, '-S', 'doomed', '--json');
	is($rc, 1, '(g) without the extension: status still exits 1');
	my $j = eval { decode_json($out) } // {};
	is($j->{slot}{cause}, 'lost', '(g) without the extension: cause lost from pg_replication_slots');
	is($j->{source}, 'pg_replication_slots', '(g) and says where it came from');
	like($j->{note}, qr/CREATE EXTENSION cdc_relay/, '(g) with the note that the extension gives the rest');
	is($j->{slot}{wal_rate_bytes_per_s}, undef, '(g) no rate without the extension');
}

# (h) one truth for prerequisites: the relay prints check_setup()'s fix
{
	# the fix of one check, as check_setup() gives it (run as $role)
	my $setup_fix = sub {
		my ($check, $role) = @_;
		$small->safe_psql('postgres', q{CREATE EXTENSION IF NOT EXISTS cdc_relay});
		my $fix = $small->safe_psql('postgres',
			($role ? "SET ROLE $role; " : '') . "SELECT fix FROM cdc_relay.check_setup() WHERE \"check\" = '$check'");
		$small->safe_psql('postgres', q{DROP EXTENSION cdc_relay});
		return $fix;
	};
	my $relay_fix = sub {
		my ($what, $conninfo, $with_ext) = @_;
		$small->safe_psql('postgres', $with_ext ? 'CREATE EXTENSION IF NOT EXISTS cdc_relay' : 'DROP EXTENSION IF EXISTS cdc_relay');
		my $log_from = -s $small->logfile;
		my ($rc, $out, $err) = run_relay($conninfo, $broker, '-S', 'prereq', '--snapshot', 'never');
		my $ext = $with_ext ? 'installed' : 'absent';
		is($rc, 1, "(h) $what, extension $ext: the relay exits 1");
		# the server logs every statement: did the relay ask the extension?
		my $asked = substr(slurp_file($small->logfile), $log_from) =~ /FROM cdc_relay\.check_setup\(\)/ ? 1 : 0;
		is($asked, $with_ext ? 1 : 0, "(h) $what, extension $ext: the relay "
			  . ($with_ext ? 'asks' : 'cannot ask') . ' cdc_relay.check_setup()');
		my ($fix) = $err =~ /ERROR .*?; fix: (.*)$/m;
		return $fix // "(no fix in: $err)";
	};

	# items that need quoting: a comma, a backslash, a quote, a blank
	$small->safe_psql('postgres',
		q{ALTER SYSTEM SET output_plugin_libraries = 'pgoutput', 'a,b', 'c\d', 'it''s', 'X Y'; SELECT pg_reload_conf();});
	ok(wait_until(sub { $small->safe_psql('postgres', 'SHOW output_plugin_libraries') =~ /X Y/ }, 'the reload', 30),
		'(h) output_plugin_libraries without cdc_relay');
	my $want = $setup_fix->('output_plugin_libraries');
	is($want, q{ALTER SYSTEM SET output_plugin_libraries = 'pgoutput', 'a,b', E'c\\\\d', 'it''s', 'X Y', 'cdc_relay'; }
		  . q{SELECT pg_reload_conf();},
		'(h) check_setup()\'s fix for output_plugin_libraries');
	is($relay_fix->('output_plugin_libraries', $small_conn, 1), $want, '(h) with the extension the relay prints check_setup()\'s fix');
	is($relay_fix->('output_plugin_libraries', $small_conn, 0), $want, '(h) without it the relay prints the same fix');
	$small->safe_psql('postgres', q{ALTER SYSTEM RESET output_plugin_libraries; SELECT pg_reload_conf();});

	$small->safe_psql('postgres', q{CREATE ROLE norepl LOGIN; GRANT pg_read_all_settings TO norepl;});
	my $norepl = $small->connstr('postgres') . ' user=norepl';
	$want = $setup_fix->('replication privilege', 'norepl');
	is($want, 'ALTER ROLE "norepl" REPLICATION;', '(h) check_setup()\'s fix for a role without REPLICATION');
	is($relay_fix->('no REPLICATION', $norepl, 1), $want, '(h) with the extension the relay prints check_setup()\'s fix');
	is($relay_fix->('no REPLICATION', $norepl, 0), $want, '(h) without it the relay prints the same fix');
}

done_testing();
