# test/tap/103_relay_cli.pl: the relay's command line, config file, secrets in
# errors, prerequisite checks and the --snapshot modes never / initial-only.
#
#   - bad usage (unknown option, missing value, bad --snapshot, --snapshot-jobs,
#     --endpos, --topic-prefix, -X without '=', missing -d / -b /
#     --topic-prefix, stray argument, Kafka properties that weaken the
#     delivery guarantee: -X acks=1, -X enable.idempotence=false, kafka.acks
#     in a config file) and bad config files (unknown key, line without '=',
#     bad value, unclosed quote, missing file): exit 2, stderr is exactly
#     "cdc-relay: <reason>" (the reason names the option, or the file and
#     line) and the "Try" line;
#   - a config file's "# comment" after a value and a UTF-8 byte order mark:
#     a bad value behind them is reported as that value, and a file full of
#     them runs a snapshot with the values it holds;
#   - an unknown librdkafka property (-X) is reported when the producer is
#     created: exit 1 or 2 and a message naming the property;
#   - --help (exit 0) documents run and broker, --topic-prefix as required;
#     --version;
#   - a password in the connection string (key=value or URI, on the command
#     line or in a config file) or in a -X secret property never appears on
#     stderr, also at -v -v; malformed URIs (unterminated IPv6 host, bad %
#     escape) give "invalid connection string" without the password;
#   - a config file that holds a password and is readable by others gets a
#     WARNING with the chmod fix; a 0600 one does not;
#   - prerequisites, on a second cluster with wal_level=replica and the default
#     output_plugin_libraries: exit 1, each problem logged with its exact fix,
#     no slot created; running the logged fixes makes the relay work;
#   - a database without the extension: exit 1 naming CREATE EXTENSION
#     cdc_relay; --snapshot never streams there without it;
#   - a role without REPLICATION: exit 1 naming ALTER ROLE ... REPLICATION;
#   - --snapshot initial-only: snapshot, exit 0 without streaming, the slot
#     stays; a later run streams from the slot without a second snapshot.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use RelayTest;

my $json = JSON::PP->new->canonical;
my $TRY = 'Try "cdc-relay --help" for more information.';
my $tmp = PostgreSQL::Test::Utils::tempdir();

# run the relay with exactly these arguments (nothing added)
sub relay_args
{
	return run_relay(undef, undef, { exact => 1, timeout => 60 }, @_);
}

sub write_file
{
	my ($name, $content) = @_;
	my $path = "$tmp/$name";
	open(my $fh, '>', $path) or die "$path: $!";
	print $fh $content;
	close $fh;
	return $path;
}

# ---- bad usage: exit 2, one line, then the Try line ---------------------------------
my @ok = ('-d', 'dbname=postgres', '-b', '127.0.0.1:9', '--topic-prefix', 'cdc');
my $cfg_unknown = write_file('unknown.conf', "# comment\nslot = s1\nslots = s2\n");
my $cfg_noeq = write_file('noeq.conf', "slot = s1\n\njust some words\n");
my $cfg_badval = write_file('badval.conf', "slot = s1\n# jobs\nsnapshot-jobs = 0\n");
# a byte order mark and comments after values: the bad value is "0", so both were dealt with
my $cfg_bom = write_file('bom.conf', "\xEF\xBB\xBFsnapshot-jobs = 0   # none at all\n");
my $cfg_comment = write_file('comment.conf', "slot = s1 # the slot\nsnapshot = sometimes\t# bad\n");
my $cfg_quote = write_file('quote.conf', "slot = s1\ntables = 'public.*\n");
my $cfg_acks = write_file('acks.conf', "slot = s1\nkafka.acks = 1   # faster\n");
my $WEAKEN = 'would weaken the delivery guarantee: cdc-relay confirms a position to PostgreSQL only after Kafka acknowledged every message before it, which needs acks=all';
my @usage = (
	[ 'unknown option', [ 'run', @ok, '--bogus' ], qr/^cdc-relay: unknown option --bogus$/ ],
	[ 'unknown short option', [ 'run', @ok, '-Z' ], qr/^cdc-relay: option -Z is not an option of run$/ ],
	[ 'missing value (long)', [ 'run', @ok, '--snapshot' ], qr/^cdc-relay: option --snapshot requires a value$/ ],
	[ 'missing value (short)', [ 'run', @ok, '-d' ], qr/^cdc-relay: option -d requires a value$/ ],
	[ 'missing value of --slot', [ 'run', @ok, '--slot' ], qr/^cdc-relay: option (--slot|-S) requires a value$/ ],
	[ 'bad --snapshot', [ 'run', @ok, '--snapshot', 'sometimes' ],
		qr/^cdc-relay: --snapshot "sometimes": valid values are initial, never, always, initial-only$/ ],
	[ 'bad --snapshot-jobs (0)', [ 'run', @ok, '--snapshot-jobs', '0' ], qr/^cdc-relay: --snapshot-jobs "0": expected an integer from 1 to 64$/ ],
	[ 'bad --snapshot-jobs (text)', [ 'run', @ok, '--snapshot-jobs=two' ], qr/^cdc-relay: --snapshot-jobs "two"/ ],
	[ 'bad --snapshot-jobs (65)', [ 'run', @ok, '--snapshot-jobs', '65' ], qr/^cdc-relay: --snapshot-jobs "65"/ ],
	[ 'bad --endpos', [ 'run', @ok, '--endpos', '12345' ], qr/^cdc-relay: --endpos "12345": expected a WAL position like/ ],
	[ 'bad --endpos (0/0)', [ 'run', @ok, '--endpos', '0/0' ], qr/^cdc-relay: --endpos "0\/0"/ ],
	[ 'bad --topic-prefix', [ 'run', @ok, '--topic-prefix', 'my prefix!' ], qr/^cdc-relay: --topic-prefix "my prefix!": use 1 to 100 characters/ ],
	[ 'bad --slot', [ 'run', @ok, '-S', 'My-Slot' ], qr/^cdc-relay: --slot "My-Slot": slot names may contain only/ ],
	[ 'bad --status-interval', [ 'run', @ok, '--status-interval', '0' ], qr/^cdc-relay: --status-interval "0"/ ],
	[ '-X without =', [ 'run', @ok, '-X', 'linger.ms' ], qr/^cdc-relay: -X expects KEY=VALUE \(a librdkafka property\), got "linger.ms"$/ ],
	[ 'missing -d', [ 'run', '-b', '127.0.0.1:9' ], qr/^cdc-relay: no database given: use -d CONNINFO/ ],
	[ 'missing -b', [ 'run', '-d', 'dbname=postgres' ], qr/^cdc-relay: no Kafka brokers given: use -b/ ],
	[ 'missing --topic-prefix', [ 'run', '-d', 'dbname=postgres', '-b', '127.0.0.1:9' ],
		qr/^cdc-relay: no topic prefix given: use --topic-prefix NAME \(topics are NAME\.<schema>\.<table>; give each database its own prefix\)$/ ],
	[ '-X acks=1', [ 'run', @ok, '-X', 'acks=1' ], qr/^cdc-relay: -X acks=1 \Q$WEAKEN\E/ ],
	[ '-X acks=0', [ 'run', @ok, '-X', 'acks=0' ], qr/^cdc-relay: -X acks=0 \Q$WEAKEN\E/ ],
	[ '-X request.required.acks=1', [ 'run', @ok, '-X', 'request.required.acks=1' ],
		qr/^cdc-relay: -X request.required.acks=1 \Q$WEAKEN\E/ ],
	[ '-X enable.idempotence=false', [ 'run', @ok, '-X', 'enable.idempotence=false' ],
		qr/^cdc-relay: -X enable.idempotence=false \Q$WEAKEN\E/ ],
	[ '-X enable.idempotence=false with acks=1', [ 'run', @ok, '-X', 'enable.idempotence=false', '-X', 'acks=1' ],
		qr/^cdc-relay: -X enable.idempotence=false \Q$WEAKEN\E/ ],
	[ '-X partitioner=random', [ 'run', @ok, '-X', 'partitioner=random' ],
		qr/^cdc-relay: -X partitioner=random would weaken the delivery guarantee: a key's changes would be spread over partitions/ ],
	[ 'malformed URI: unterminated IPv6 host', [ 'run', '-d', 'postgresql://u:sekrit123@[::1', '-b', '127.0.0.1:9', '--topic-prefix', 'cdc' ],
		qr/^cdc-relay: invalid connection string: end of string reached when looking for matching "..." in IPv6 host address in URI: "..."$/ ],
	[ 'malformed URI: bad % escape', [ 'run', '-d', 'postgresql://u:sek%zzrit123@localhost/db', '-b', '127.0.0.1:9', '--topic-prefix', 'cdc' ],
		qr/^cdc-relay: invalid connection string: invalid percent-encoded token: "..."$/ ],
	[ 'stray argument', [ 'run', @ok, 'extra' ], qr/^cdc-relay: unexpected argument "extra"$/ ],
	[ 'no command', [], qr/^cdc-relay: no command given$/ ],
	[ 'unknown command', ['runn'], qr/^cdc-relay: unknown command "runn"/ ],
	[ 'config: unknown key', [ 'run', @ok, '-c', $cfg_unknown ],
		qr/^cdc-relay: \Q$cfg_unknown\E:3: unknown setting "slots"/ ],
	[ 'config: line without =', [ 'run', @ok, '-c', $cfg_noeq ],
		qr/^cdc-relay: \Q$cfg_noeq\E:3: expected "key = value"$/ ],
	[ 'config: bad value', [ 'run', @ok, '-c', $cfg_badval ],
		qr/^cdc-relay: \Q$cfg_badval\E:3: --snapshot-jobs "0": expected an integer from 1 to 64$/ ],
	[ 'config: byte order mark, comment after the value', [ 'run', @ok, '-c', $cfg_bom ],
		qr/^cdc-relay: \Q$cfg_bom\E:1: --snapshot-jobs "0": expected an integer from 1 to 64$/ ],
	[ 'config: comments after values', [ 'run', @ok, '-c', $cfg_comment ],
		qr/^cdc-relay: \Q$cfg_comment\E:2: --snapshot "sometimes": valid values are/ ],
	[ 'config: unclosed quote', [ 'run', @ok, '-c', $cfg_quote ],
		qr/^cdc-relay: \Q$cfg_quote\E:2: the quote at column 10 is not closed$/ ],
	[ 'config: kafka.acks = 1', [ 'run', @ok, '-c', $cfg_acks ],
		qr/^cdc-relay: \Q$cfg_acks\E:2: kafka.acks = 1 \Q$WEAKEN\E/ ],
	[ 'config: missing file', [ 'run', @ok, '-c', "$tmp/nonexistent.conf" ],
		qr/^cdc-relay: could not open config file "\Q$tmp\E\/nonexistent.conf": No such file or directory$/ ],
);
for my $u (@usage)
{
	my ($name, $args, $re) = @$u;
	my ($rc, $out, $err) = relay_args(@$args);
	my @lines = split /\n/, $err;
	ok(defined $rc && $rc == 2 && @lines == 2 && $lines[0] =~ $re && $lines[1] eq $TRY && $out eq '',
		"$name: exit 2, reason, Try line")
	  or diag("exit " . ($rc // 'none') . ", stdout: $out\nstderr:\n$err");
}

# an unknown librdkafka property: found when the producer is created
{
	my ($rc, $out, $err) = relay_args('run', @ok, '-X', 'no.such.property=1');
	ok(defined $rc && ($rc == 1 || $rc == 2), 'unknown -X property: exit 1 or 2 (' . ($rc // 'none') . ')');
	like($err, qr/no\.such\.property.*No such configuration property|No such configuration property.*no\.such\.property/,
		'unknown -X property: the message names the property');
	unlike($err, qr/could not connect|streaming/, 'unknown -X property: stops before connecting');
	($rc, $out, $err) = relay_args('run', @ok, '-c', write_file('kafka.conf', "kafka.no.such.thing = 1\n"));
	ok(defined $rc && ($rc == 1 || $rc == 2), 'unknown kafka.* property in a config file: exit 1 or 2');
	like($err, qr/no\.such\.thing/, 'unknown kafka.* property in a config file: the message names it');
}

# ---- help and version ------------------------------------------------------------
{
	my ($rc, $out, $err) = relay_args('--help');
	is($rc, 0, '--help exits 0');
	like($out, qr/cdc-relay run -d CONNINFO -b BROKERS/, '--help documents run');
	like($out, qr/cdc-relay broker/, '--help documents broker');
	like($out, qr/--snapshot=MODE.*--snapshot-jobs=N.*--endpos=LSN/s, '--help lists the run options');
	like($out, qr/--topic-prefix=PREFIX\s+required/, '--help says --topic-prefix is required');
	is($err, '', '--help: nothing on stderr');
	($rc, $out, $err) = relay_args('run', '--help');
	is($rc, 0, 'run --help exits 0');
	like($out, qr/Options of run:/, 'run --help prints the options');
	($rc, $out, $err) = relay_args('--version');
	is($rc, 0, '--version exits 0');
	like($out, qr/^cdc-relay \d+\.\d+\.\d+ \(librdkafka [\d.]+/, '--version prints the version');
}

# ---- secrets never on stderr --------------------------------------------------------
{
	my $cfg = write_file('secret.conf', "dbname = host=127.0.0.1 port=1 dbname=postgres password=sekrit123\nbrokers = 127.0.0.1:9\ntopic-prefix = cdc\n");
	chmod(0600, $cfg);
	my @cases = (
		[ 'conninfo password', [ 'run', '-d', 'host=127.0.0.1 port=1 dbname=postgres user=u password=sekrit123', '-b', '127.0.0.1:9' ] ],
		[ 'URI password', [ 'run', '-d', 'postgresql://u:sekrit123@127.0.0.1:1/postgres', '-b', '127.0.0.1:9', '--topic-prefix', 'cdc' ] ],
		[ 'conninfo password at -v -v', [ 'run', '-v', '-v', '-d', "host=127.0.0.1 port=1 password='sekrit123' dbname=postgres", '-b', '127.0.0.1:9', '--topic-prefix', 'cdc' ] ],
		[ 'bad conninfo with a password', [ 'run', '-d', 'host=127.0.0.1 port=1 password=sekrit123 bogus=1', '-b', '127.0.0.1:9', '--topic-prefix', 'cdc' ] ],
		[ 'malformed URI (IPv6 host) at -v -v', [ 'run', '-v', '-v', '-d', 'postgresql://u:sekrit123@[::1', '-b', '127.0.0.1:9', '--topic-prefix', 'cdc' ] ],
		[ 'malformed URI (% escape) at -v -v', [ 'run', '-v', '-v', '-d', 'postgresql://u:sek%zzrit123@localhost/db', '-b', '127.0.0.1:9', '--topic-prefix', 'cdc' ] ],
		[ 'malformed URI in a config file', [ 'run', '-c', write_file('bad_uri.conf', "dbname = postgresql://u:sekrit123@[::1\n"), '-b', '127.0.0.1:9', '--topic-prefix', 'cdc' ] ],
		[ 'password in the config file', [ 'run', '-v', '-v', '-c', $cfg ] ],
		[ '-X secret without =', [ 'run', @ok, '-X', 'sasl.passwordsekrit123' ] ],
		[ '-X unknown secret property', [ 'run', @ok, '-X', 'sasl.password.x=sekrit123' ] ],
	);
	for my $c (@cases)
	{
		my ($name, $args) = @$c;
		my ($rc, $out, $err) = relay_args(@$args);
		ok(defined $rc && $rc != 0, "$name: fails (exit " . ($rc // 'none') . ")");
		unlike($err . $out, qr/sekrit123|sek%zzrit123|zzrit/, "$name: the password is not printed");
		like($err, qr/invalid connection string: /, "$name: says the connection string is invalid")
		  if $name =~ /malformed/;
	}
}

# ---- a config file that holds a password and others may read ---------------------------
{
	my @cases = (
		[ 'conninfo password', "dbname = host=127.0.0.1 port=1 dbname=postgres password=sekrit123   # the database\n" ],
		[ 'URI password', "dbname = postgresql://u:sekrit123\@127.0.0.1:1/postgres\n" ],
		[ 'kafka.sasl.password', "dbname = dbname=postgres\nkafka.sasl.password = sekrit123\n" ],
	);
	for my $c (@cases)
	{
		my ($name, $content) = @$c;
		# no topic prefix: exit 2 right after the file was read
		my $f = write_file('readable.conf', $content . "brokers = 127.0.0.1:9\n");
		for my $mode (0644, 0640, 0600)
		{
			chmod($mode, $f) or die "chmod $f: $!";
			my ($rc, $out, $err) = relay_args('run', '-c', $f);
			my $what = sprintf('%s, mode %04o', $name, $mode);
			is($rc, 2, "$what: exit 2 (no topic prefix)");
			my $warned = $err =~ /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC WARNING config file \Q$f\E is readable by other users and holds a password; fix: chmod 600 \Q$f\E$/m;
			if ($mode & 077)
			{
				ok($warned, "$what: the warning with the fix") or diag($err);
			}
			else
			{
				ok(!$warned && $err !~ /readable by other users/, "$what: no warning") or diag($err);
			}
			unlike($err, qr/sekrit123/, "$what: the password is not printed");
		}
	}
	my $f = write_file('nopassword.conf', "dbname = host=127.0.0.1 user=u dbname=postgres\nbrokers = 127.0.0.1:9\n");
	chmod(0666, $f);
	my ($rc, $out, $err) = relay_args('run', '-c', $f);
	unlike($err, qr/readable by other users/, 'no password, mode 0666: no warning');
}

# ---- the main cluster ----------------------------------------------------------------
my $node = logical_node('cli');
my $broker = start_broker();
my $bs = $broker->{bootstrap};

# ---- prerequisites on a wal_level=replica cluster without cdc_relay allowed -----------
{
	my $node2 = PostgreSQL::Test::Cluster->new('replica_level');
	$node2->init(allows_streaming => 1);
	$node2->start;
	is($node2->safe_psql('postgres', 'SHOW wal_level'), 'replica', 'second cluster: wal_level replica');
	$node2->safe_psql('postgres', 'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)');
	my ($rc, $out, $err) = run_relay($node2, $broker, '-S', 'pre_slot', '--topic-prefix', 'pre');
	is($rc, 1, 'missing prerequisites: exit 1');
	my ($fix_wal) = $err =~ /wal_level is "replica", logical decoding needs "logical"; fix: (ALTER SYSTEM SET wal_level = logical;)/;
	ok($fix_wal, 'wal_level: the fix is named') or diag($err);
	my ($fix_libs) = $err =~ /output_plugin_libraries \("[^"]*"\) does not allow cdc_relay; fix: (ALTER SYSTEM SET output_plugin_libraries = [^;]*; SELECT pg_reload_conf\(\);)/;
	ok($fix_libs, 'output_plugin_libraries: the fix is named') or diag($err);
	like($err, qr/fix: CREATE EXTENSION cdc_relay;/, 'missing extension: the fix is named');
	like($err, qr/3 prerequisites missing/, 'all three problems reported at once');
	is($node2->safe_psql('postgres', 'SELECT count(*) FROM pg_replication_slots'), 0, 'no slot was created');

	# the logged fixes, as logged, make it work
	$node2->safe_psql('postgres', $fix_wal // 'SELECT 1');
	$node2->safe_psql('postgres', $fix_libs // 'SELECT 1');
	$node2->safe_psql('postgres', 'CREATE EXTENSION cdc_relay');
	$node2->restart;
	($rc, $out, $err) = run_relay($node2, $broker, '-S', 'pre_slot', '--topic-prefix', 'pre',
		'--snapshot', 'initial-only');
	is($rc, 0, 'after the logged fixes the relay works') or diag($err);
	is(scalar(grep { ($_->{headers}{op} // '') eq 'r' } consume($bs, 'pre.public.t')), 2,
		'after the fixes: the snapshot reached Kafka');
	$node2->stop;
}

# ---- a database without the extension --------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE noext');
$node->safe_psql('noext', 'CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, \'before\')');
{
	my ($rc, $out, $err) = run_relay($node, $broker, { dbname => 'noext' }, '-S', 'noext_slot',
		'--topic-prefix', 'noext', '--snapshot', 'initial');
	is($rc, 1, 'no extension, --snapshot initial: exit 1');
	like($err, qr/the initial snapshot needs the cdc_relay extension in database "noext"; fix: CREATE EXTENSION cdc_relay;/,
		'no extension: the fix is named');
	is($node->safe_psql('noext', 'SELECT count(*) FROM pg_replication_slots'), 0, 'no extension: no slot created');

	my $relay = start_relay($node, $broker, { dbname => 'noext' }, '-S', 'noext_slot',
		'--topic-prefix', 'noext', '--snapshot', 'never');
	ok($relay->wait_for_log(qr/streaming from slot "noext_slot" into Kafka/), '--snapshot never: streams without the extension');
	$node->safe_psql('noext', "INSERT INTO t SELECT g, 'after' FROM generate_series(2, 11) g; UPDATE t SET v = 'upd' WHERE id = 2");
	my $end = $node->safe_psql('noext', 'SELECT pg_current_wal_insert_lsn()');
	ok(wait_for_confirmed($node, 'noext_slot', $end), '--snapshot never: changes confirmed');
	is($relay->stop, 0, '--snapshot never: exit 0 on SIGTERM');
	unlike($relay->log_content, qr/snapshot at/, '--snapshot never: no snapshot');
	my @msgs = consume($bs, 'noext.public.t');
	is(scalar(grep { ($_->{headers}{op} // '') eq 'r' } @msgs), 0, '--snapshot never: no snapshot rows');
	is(scalar(grep { ($_->{headers}{op} // '') eq 'c' } @msgs), 10, '--snapshot never: the 10 inserts');
	my $last = last_by_key(\@msgs);
	is($json->decode($last->{'{"id":2}'} // '{}')->{after}{v}, 'upd', '--snapshot never: the update');
}

# ---- a role without REPLICATION ---------------------------------------------------------
$node->safe_psql('postgres', 'CREATE EXTENSION cdc_relay; CREATE ROLE norepl LOGIN');
{
	my ($rc, $out, $err) = run_relay($node->connstr('postgres') . ' user=norepl', $broker,
		'-S', 'norepl_slot', '--topic-prefix', 'norepl', '--snapshot', 'never');
	is($rc, 1, 'role without REPLICATION: exit 1');
	like($err, qr/role "norepl" may not use replication; fix: ALTER ROLE "norepl" REPLICATION;/,
		'role without REPLICATION: the fix is named') or diag($err);
	$node->safe_psql('postgres', 'ALTER ROLE "norepl" REPLICATION');
	my $end = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
	($rc, $out, $err) = run_relay($node->connstr('postgres') . ' user=norepl', $broker,
		'-S', 'norepl_slot', '--topic-prefix', 'norepl', '--snapshot', 'never', '--endpos', $end);
	is($rc, 0, 'after ALTER ROLE ... REPLICATION the relay works') or diag($err);
}

# ---- a config file with a byte order mark and comments, run for real -----------------------
$node->safe_psql('postgres', q{
CREATE TABLE cfg_t (id int PRIMARY KEY, v text);
CREATE TABLE cfg_other (id int PRIMARY KEY);
INSERT INTO cfg_t SELECT g, 'row # ' || g FROM generate_series(1, 5) g;
INSERT INTO cfg_other VALUES (1);
});
{
	my $connstr = $node->connstr('postgres');
	my $f = write_file('working.conf', "\xEF\xBB\xBF# cdc-relay settings\n"
		  . "dbname = $connstr   # the test cluster\n"
		  . "brokers = $bs\t# the test broker\n"
		  . "topic-prefix = cfgfile # one prefix per database\n"
		  . "slot = cfg_slot#no space before the comment\n"
		  . "tables = 'public.cfg_t'   # only this table\n"
		  . "snapshot = initial-only\n"
		  . "kafka.client.id = \"relay # test\"\n"
		  . "   # an indented comment\n");
	my ($rc, $out, $err) = relay_args('run', '-c', $f);
	is($rc, 0, 'config file with a BOM and comments: the snapshot ran') or diag($err);
	is($node->safe_psql('postgres', "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'cfg_slot'"),
		1, 'config file: the slot named in it (before a comment) was created');
	my @msgs = consume($bs, 'cfgfile.public.cfg_t');
	is(scalar(grep { ($_->{headers}{op} // '') eq 'r' } @msgs), 5,
		'config file: its topic prefix and table list were used');
	my $missing = 0;
	consume($bs, 'cfgfile.public.cfg_other', missing => \$missing);
	ok($missing, 'config file: the table left out by its tables setting has no topic');
	$node->safe_psql('postgres',
		"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'cfg_slot'");
}

# ---- --snapshot initial-only --------------------------------------------------------------
$node->safe_psql('postgres', q{
CREATE TABLE only_t (id int PRIMARY KEY, v text);
INSERT INTO only_t SELECT g, 'row ' || g FROM generate_series(1, 100) g;
});
{
	my @args = ('-S', 'only_slot', '--topic-prefix', 'only', '--tables', 'public.only_t');
	my ($rc, $out, $err) = run_relay($node, $broker, @args, '--snapshot', 'initial-only');
	is($rc, 0, 'initial-only: exit 0');
	like($err, qr/snapshot complete: \d+ rows from 1 tables/, 'initial-only: snapshot taken');
	like($err, qr/--snapshot initial-only: done; slot "only_slot" stays/, 'initial-only: says it is done');
	unlike($err, qr/streaming from slot/, 'initial-only: does not stream');
	is($node->safe_psql('postgres', "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'only_slot'"),
		1, 'initial-only: the slot stays');
	my %r = map { ($_->{key} => $_->{value}) } grep { ($_->{headers}{op} // '') eq 'r' } consume($bs, 'only.public.only_t');
	is(scalar(keys %r), 100, 'initial-only: one snapshot row per row of the table');

	($rc, $out, $err) = run_relay($node, $broker, @args, '--snapshot', 'initial-only');
	is($rc, 0, 'initial-only again: exit 0');
	like($err, qr/the snapshot of slot "only_slot" is complete already; nothing to do/,
		'initial-only again: nothing to do');

	# changes after the snapshot, then a normal run streams them from the slot
	$node->safe_psql('postgres', "INSERT INTO only_t VALUES (101, 'later'); DELETE FROM only_t WHERE id = 50");
	my $relay = start_relay($node, $broker, @args);
	ok($relay->wait_for_log(qr/streaming from slot "only_slot" into Kafka/), 'later run streams');
	my $end = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
	ok(wait_for_confirmed($node, 'only_slot', $end), 'later run: changes confirmed');
	is($relay->stop, 0, 'later run: exit 0 on SIGTERM');
	unlike($relay->log_content, qr/snapshot at|created replication slot|dropping slot/, 'later run: no second snapshot');
	my @msgs = consume($bs, 'only.public.only_t');
	is(scalar(grep { ($_->{headers}{op} // '') eq 'r' } @msgs), scalar(keys %r), 'later run: no new snapshot rows');
	my $last = last_by_key(\@msgs);
	ok(exists $last->{'{"id":101}'} && !exists $last->{'{"id":50}'},
		'later run: the insert and the delete made after the snapshot arrived');
}

# ---- Kafka topic names that collide ('.' and '_' are the same to Kafka) -------------------
$node->safe_psql('postgres', 'CREATE DATABASE coll');
$node->safe_psql('coll', q{
CREATE EXTENSION cdc_relay;
CREATE SCHEMA sales; CREATE SCHEMA sales_order; CREATE SCHEMA "_";
CREATE TABLE sales.order_items (id int PRIMARY KEY);
CREATE TABLE sales_order.items (id int PRIMARY KEY);
CREATE TABLE "_".state (id int PRIMARY KEY);
INSERT INTO sales.order_items VALUES (1);
});
{
	my $coll_re = qr/tables sales\.order_items and sales_order\.items map to Kafka topics cdc\.sales\.order_items and cdc\.sales_order\.items, which Kafka treats as colliding .*; fix: exclude one with --exclude-tables or rename it/;
	my ($rc, $out, $err) = run_relay($node, $broker, { dbname => 'coll' }, '-S', 'coll_slot',
		'--exclude-tables', '_.state');
	is($rc, 1, 'colliding topics at start: exit 1');
	like($err, $coll_re, 'colliding topics at start: both tables, both topics and the fix are named');
	is($node->safe_psql('coll', "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'coll_slot'"), 0,
		'colliding topics at start: no slot created');

	($rc, $out, $err) = run_relay($node, $broker, { dbname => 'coll' }, '-S', 'coll_slot',
		'--tables', '_.state');
	is($rc, 1, 'a table whose topic collides with the state topic: exit 1');
	like($err, qr/map to Kafka topics cdc\.__state and cdc\._\.state, which Kafka treats as colliding/,
		'a table whose topic collides with the state topic: named');

	# a colliding table that appears while the relay streams
	$node->safe_psql('coll', 'DROP TABLE sales_order.items');
	my $relay = start_relay($node, $broker, { dbname => 'coll' }, '-S', 'coll_slot',
		'--exclude-tables', '_.state', '--snapshot', 'never');
	ok($relay->wait_for_log(qr/streaming from slot "coll_slot" into Kafka/), 'colliding table later: the relay streams');
	$node->safe_psql('coll', 'INSERT INTO sales.order_items VALUES (2)');
	my $before = $node->safe_psql('coll', 'SELECT pg_current_wal_insert_lsn()');
	ok(wait_for_confirmed($node, 'coll_slot', $before), 'colliding table later: the first table\'s rows are confirmed');
	$node->safe_psql('coll', 'CREATE TABLE sales_order.items (id int PRIMARY KEY)');
	$node->safe_psql('coll', 'INSERT INTO sales_order.items VALUES (1)');
	is($relay->finish, 1, 'colliding table later: the relay stops with exit 1 when the second table appears');
	like($relay->log_content, $coll_re, 'colliding table later: both tables, both topics and the fix are named');
	ok(lsn_cmp(confirmed_flush($node, 'coll_slot'), $node->safe_psql('coll', 'SELECT pg_current_wal_insert_lsn()')) < 0,
		'colliding table later: the slot is not confirmed past the colliding change');
	ok(!grep({ $_ eq 'cdc.sales_order.items' } topics($bs)), 'colliding table later: no topic was created for it');
}

# ---- a snapshot row Kafka will never take -------------------------------------------------
$node->safe_psql('postgres', "CREATE TABLE bigsnap (id int PRIMARY KEY, v text); INSERT INTO bigsnap VALUES (7, repeat('y', 2000000))");
{
	my ($rc, $out, $err) = run_relay($node, $broker, '-S', 'bigsnap_slot', '--tables', 'public.bigsnap');
	is($rc, 1, 'a snapshot row over message.max.bytes: exit 1');
	like($err, qr/snapshot failed: Kafka rejected a message for good: topic cdc\.public\.bigsnap, table public\.bigsnap, key \{"id":7\}, 2000\d{3} bytes: .*message\.max\.bytes/,
		'a snapshot row over message.max.bytes: topic, table, key, size and the fix are named');
	is(() = $err =~ /rejected a message for good/g, 1, 'a snapshot row over message.max.bytes: said once');
	like($err, qr/dropped replication slot "bigsnap_slot" that this run created/,
		'a snapshot row over message.max.bytes: the slot this run created is dropped');
	is($node->safe_psql('postgres', "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'bigsnap_slot'"), 0,
		'a snapshot row over message.max.bytes: no slot left');
}

# ---- SIGTERM during a first start: the slot that run created goes too --------------------
$node->safe_psql('postgres', 'CREATE TABLE sigterm_t (id int PRIMARY KEY); INSERT INTO sigterm_t VALUES (1)');
{
	# Kafka refuses writes (retriable), so the relay waits on its "started" state record
	like($broker->command('error produce NOT_ENOUGH_REPLICAS 100000'), qr/^ok/, 'SIGTERM at start: Kafka refuses writes');
	my $relay = start_relay($node, $broker, '-S', 'sigterm_slot', '--tables', 'public.sigterm_t');
	ok($relay->wait_for_log(qr/created replication slot "sigterm_slot"/), 'SIGTERM at start: the relay created its slot');
	is($relay->stop, 0, 'SIGTERM at start: exit 0');
	like($relay->log_content, qr/dropped replication slot "sigterm_slot" that this run created/,
		'SIGTERM at start: the slot this run created is dropped');
	is($node->safe_psql('postgres', "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'sigterm_slot'"), 0,
		'SIGTERM at start: no slot left holding WAL');
	like($broker->command('clear produce'), qr/^ok/, 'SIGTERM at start: Kafka takes writes again');
}

is($broker->stop, 0, 'broker exits 0 on SIGTERM');
done_testing();
