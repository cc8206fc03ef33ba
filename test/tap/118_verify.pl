# test/tap/118_verify.pl: `cdc-relay verify` against a real Kafka (a 1-node KRaft cluster).
#
# The shop tables (RelayTest::shop_tables) are captured by a relay while two pgbench writers
# run.  Then:
#   - a clean run under the writers: exit 0, every table 0 missing / extra / different, and
#     its rows all found in Kafka (the moves topic compacts within seconds, so keys whose
#     records at or below the comparison point were compacted away may be unverifiable:
#     never a difference);
#   - drift planted with kcat: a bogus record (different), a tombstone (missing), a record
#     for a key the table does not have (extra), a key whose only record is after the
#     comparison point (unverifiable, standing for one compacted away);
#   - drift from a relay that was stopped while its slot was dropped and a row was updated
#     and another inserted, then restarted on a new slot with --snapshot never: the update
#     is "different", the insert "missing";
#   each reported exactly (kind, table, key, both values), in --json (parsed with JSON::PP)
#   and in the text report; exit 1;
#   - exit codes: 2 for bad usage, 3 when the relay's slot is missing or the relay does not
#     confirm the comparison point within --timeout (it is stopped);
#   - --tables limits the check, --examples limits the examples;
#   - a session idle in a transaction that wrote holds slot creation (logical decoding waits
#     for it): the relay's first start and verify's temporary slot both say so after 5 s,
#     naming the session's server process and the fix, and go on once it ends.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use JSON::PP;
use RelayTest;
use KafkaCluster;

my $t_start = time();
my $node = logical_node('verify', 'max_connections = 30');
my %shop = (accounts => 3000, orders => 500, moves => 2000);
$node->safe_psql('postgres', 'CREATE EXTENSION cdc_relay');
shop_tables($node, 'postgres', %shop);

my $prefix = "verify$$";
my $k = KafkaCluster->start(nodes => 1);
my $bootstrap = $k->{bootstrap};
$k->create_topics(
	[ "$prefix.public.accounts", partitions => 3, config => { 'cleanup.policy' => 'compact' } ],
	[ "$prefix.public.lines", partitions => 3, config => { 'cleanup.policy' => 'compact' } ],
	[ "$prefix.public.moves", partitions => 2, config => KafkaCluster::fast_compaction() ],
	[ "$prefix.__state", config => { 'cleanup.policy' => 'compact' } ]);
note(sprintf('Kafka started and topics created in %.1f s', time() - $t_start));

# run verify in the foreground: (exit status, stdout, stderr)
sub verify
{
	my @args = @_;
	return run_relay($node, undef,
		{ exact => 1, name => 'verify', timeout => 180 },
		'verify', '-d', $node->connstr('postgres'), '-b', $bootstrap, '--topic-prefix', $prefix, @args);
}

# verify --json: (exit status, decoded report or undef, stderr)
sub verify_json
{
	my ($rc, $out, $err) = verify('--json', @_);
	my $j = eval { JSON::PP->new->decode($out) };
	diag("verify --json printed no JSON: $@\nstdout: $out\nstderr: $err") unless $j;
	return ($rc, $j, $err);
}

sub by_table
{
	my ($j) = @_;
	return { map { $_->{table} => $_ } @{ $j->{tables} // [] } };
}

sub counts
{
	my ($t) = @_;
	return join(', ', map { "$_ " . ($t->{$_} // 'undef') } qw(rows kafka_keys missing extra different unverifiable));
}

# ---- usage errors: exit 2 -------------------------------------------------------------------
{
	my ($rc, $out, $err) = verify('--examples', 'many');
	is($rc, 2, 'bad --examples: exit 2');
	like($err, qr/--examples/, 'bad --examples: says which option');
	($rc, $out, $err) = run_relay($node, undef, { exact => 1, name => 'verify' }, 'verify', '--topic-prefix', 'x');
	is($rc, 2, 'no -d / -b: exit 2');
	($rc, $out, $err) = run_relay($node, undef, { exact => 1, name => 'verify' }, 'verify', '--help');
	is($rc, 0, '--help: exit 0');
	like($out, qr/Exit status: 0 equal, 1 differences found, 2 bad usage, 3 could not verify/, '--help lists the exit codes');
}

# ---- the relay under writers ------------------------------------------------------------------
my $writers = shop_writers($node, 'postgres', %shop, pgbench => [ '-T', '600', '-R', '200' ]);

# A session idle in a transaction that wrote: creating the slot waits for it to end, and says so.
# Returns the background psql and its server process.
sub open_writing_transaction
{
	my $s = $node->background_psql('postgres');
	my $pid = $s->query_safe(q{BEGIN; INSERT INTO lines VALUES (999999, 1, 1, 'held'); SELECT pg_backend_pid();});
	$pid =~ s/\s+//g;
	return ($s, $pid);
}
my ($held, $held_pid) = open_writing_transaction();
my $relay = start_relay($node, $k, '--topic-prefix', $prefix);
ok($relay->wait_for_log(
		qr/creating replication slot "cdc_relay": waiting \d+ s for transactions that were running when it began to end .*server process $held_pid \(database postgres, .*idle in transaction since .*fix: end them/, 30),
	'relay: slot creation held by an open transaction names its server process and the fix')
  or diag($relay->log_content);
note($1) if $relay->log_content =~ /(WARNING creating replication slot[^\n]*)/;
ok($relay->alive, 'relay: still waiting, not failed');
$held->query_safe('ROLLBACK');
$held->quit;
ok($relay->wait_for_log(qr/streaming from slot "cdc_relay" into Kafka/), 'relay snapshots, then streams')
  or BAIL_OUT('relay does not stream');

{
	my ($rc, $err);
	($rc, undef, $err) = verify('-S', 'no_such_slot', '--timeout', '5');
	is($rc, 3, 'the relay\'s slot does not exist: exit 3');
	like($err, qr/replication slot "no_such_slot" does not exist/, '... and says why');
}

# ---- verify's temporary slot held by an open transaction -------------------------------------
{
	my ($s, $pid) = open_writing_transaction();
	my $v = start_relay($node, undef, { exact => 1, name => 'verify_held' },
		'verify', '-d', $node->connstr('postgres'), '-b', $bootstrap, '--topic-prefix', $prefix,
		'--tables', 'public.accounts');
	ok($v->wait_for_log(
			qr/creating replication slot "cdc_relay_verify_\d+": waiting \d+ s for transactions .*server process $pid \(database postgres, .*fix: end them/, 30),
		'verify: its temporary slot held by an open transaction names its server process')
	  or diag($v->log_content);
	$s->query_safe('ROLLBACK');
	$s->quit;
	is($v->finish, 0, 'verify: goes on once the transaction ended, and finds no difference');
}

# ---- clean run under load -----------------------------------------------------------------------
my $t0 = time();
my ($rc, $j, $err) = verify_json();
note(sprintf('clean verify under load took %.1f s', time() - $t0));
is($rc, 0, 'clean run under writers: exit 0') or diag($err);
ok($writers->alive, 'the writers ran during the verify');
ok($j && $j->{ok}, 'clean run: "ok" is true');
like($j->{lsn} // '', qr{^[0-9A-F]+/[0-9A-F]+$}, 'clean run: the comparison point is an LSN');
my $bt = by_table($j);
is_deeply([ sort keys %$bt ], [qw(public.accounts public.lines public.moves)], 'clean run: the three captured tables');
for my $t (sort keys %$bt)
{
	my $r = $bt->{$t};
	note("$t: " . counts($r));
	ok($r->{rows} > 0 && $r->{missing} == 0 && $r->{extra} == 0 && $r->{different} == 0,
		"clean run: $t has rows and no differences (" . counts($r) . ')');
	is($r->{kafka_keys}, $r->{rows} - $r->{unverifiable}, "clean run: $t: every verifiable row is a key in Kafka");
	is_deeply($r->{examples}, [ grep { $_->{kind} eq 'unverifiable' } @{ $r->{examples} } ],
		"clean run: $t: no example of a difference");
}
# ---- drift planted with kcat --------------------------------------------------------------------
$writers->kill('TERM');
$writers->finish;

# keys of rows that exist now (the writers are done)
my @ids = split /\n/, $node->safe_psql('postgres', 'SELECT id FROM accounts ORDER BY id LIMIT 6');
my ($bogus, $tomb, $moved_upd, $unver) = @ids[ 0, 1, 2, 3 ];
my $extra = 999999;
my $new_row = 888888;
ok(wait_for_confirmed($node, 'cdc_relay', RelayTest::insert_lsn($node)), 'relay caught up after the writers stopped');

sub kcat_produce
{
	my ($topic, $key, $value, %h) = @_;
	my ($out, $kerr) = ('', '');
	my @cmd = ('kcat', '-P', '-b', $bootstrap, '-t', $topic, '-K', '|', '-Z', '-X', 'acks=all',
		'-X', 'partitioner=murmur2_random', map { ('-H', "$_=$h{$_}") } sort keys %h);
	IPC::Run::run(\@cmd, '<', \"$key|$value\n", '>', \$out, '2>', \$kerr, IPC::Run::timeout(60))
	  or die "kcat -P failed: $kerr";
}
my $acc = "$prefix.public.accounts";
# a record that is not the row (as a broken producer might write), without the relay's headers
kcat_produce($acc, qq({"id":$bogus}),
	qq({"op":"u","schema":"public","table":"accounts","key":{"id":$bogus},"before":null,"after":{"id":$bogus,"balance":-1,"note":"bogus"}}));
# a tombstone for a key the table has
kcat_produce($acc, qq({"id":$tomb}), '');
# a key the table does not have
kcat_produce($acc, qq({"id":$extra}),
	qq({"op":"c","schema":"public","table":"accounts","key":{"id":$extra},"before":null,"after":{"id":$extra,"balance":1,"note":"extra"}}));

# ---- drift from a dropped slot -------------------------------------------------------------------
is($relay->stop, 0, 'relay stopped (exit 0)');
{
	my ($rc3, undef, $err3) = verify('--timeout', '3');
	is($rc3, 3, 'relay stopped: verify cannot see the point confirmed: exit 3');
	like($err3, qr/did not confirm the comparison point .* within 3 s/, '... and says why');
}
$node->safe_psql('postgres', qq{
SELECT pg_drop_replication_slot('cdc_relay');
UPDATE accounts SET balance = balance + 1000, note = 'lost update' WHERE id = $moved_upd;
INSERT INTO accounts VALUES ($new_row, 1, 'lost insert'), ($unver + 1000000, 2, 'only later');
});
# the key inserted while no slot existed gets one record, placed after any comparison point:
# as if its earlier records had been compacted away
my $unver_key = $unver + 1000000;
kcat_produce($acc, qq({"id":$unver_key}),
	qq({"op":"u","schema":"public","table":"accounts","key":{"id":$unver_key},"before":null,"after":{"id":$unver_key,"balance":2,"note":"only later"}}),
	commit_lsn => '7FFFFFFF/0', event_id => '7FFFFFFF/0/1', op => 'u', snapshot => 'false');
$relay = start_relay($node, $k, '--topic-prefix', $prefix, '--snapshot', 'never');
ok($relay->wait_for_log(qr/streaming from slot "cdc_relay" into Kafka/), 'relay restarted on a new slot, no snapshot');
$node->safe_psql('postgres', q{UPDATE lines SET qty = qty WHERE order_id = 1});	# some traffic

($rc, $j, $err) = verify_json('--examples', '10');
is($rc, 1, 'planted drift: exit 1') or diag($err);
ok($j && !$j->{ok}, 'planted drift: "ok" is false');
$bt = by_table($j);
my $a = $bt->{'public.accounts'} // {};
note('accounts: ' . counts($a));
is($a->{different}, 2, 'accounts: 2 different (the bogus record, the update while the slot was gone)');
is($a->{missing}, 2, 'accounts: 2 missing (the tombstone, the insert while the slot was gone)');
is($a->{extra}, 1, 'accounts: 1 extra (the record for a key the table lacks)');
is($a->{unverifiable}, 1, 'accounts: 1 unverifiable (the key whose only record is after the point)');
my %ex = map { ("$_->{kind} " . JSON::PP->new->canonical->encode($_->{key})) => $_ } @{ $a->{examples} // [] };
is_deeply([ sort keys %ex ],
	[ sort(qq(different {"id":$bogus}), qq(different {"id":$moved_upd}), qq(missing {"id":$tomb}),
		qq(missing {"id":$new_row}), qq(extra {"id":$extra}), qq(unverifiable {"id":$unver_key})) ],
	'accounts: each planted drift reported with its kind and key');
my $b = $ex{qq(different {"id":$bogus})};
is_deeply($b->{kafka}, { id => $bogus, balance => -1, note => 'bogus' }, 'bogus record: the Kafka value is shown');
is($b->{table_row}{id}, $bogus, 'bogus record: the table row is shown');
my $u = $ex{qq(different {"id":$moved_upd})};
is($u->{table_row}{note}, 'lost update', 'lost update: the table has the new value');
isnt($u->{kafka}{note}, 'lost update', 'lost update: Kafka has the old one');
is($ex{qq(missing {"id":$tomb})}{kafka}, undef, 'tombstone: nothing in Kafka');
is($ex{qq(extra {"id":$extra})}{table_row}, undef, 'extra: nothing in the table');
is($ex{qq(extra {"id":$extra})}{kafka}{note}, 'extra', 'extra: the Kafka value is shown');
for my $t (qw(public.lines public.moves))
{
	my $r = $bt->{$t} // {};
	ok($r->{missing} == 0 && $r->{extra} == 0 && $r->{different} == 0, "$t: still no differences (" . counts($r) . ')');
}

# text report, --examples, --tables
my $out;
($rc, $out, $err) = verify('--examples', '1', '--tables', 'public.accounts');
is($rc, 1, 'text report: exit 1');
like($out, qr/^public\.accounts: \d+ rows, \d+ keys in Kafka, 2 missing, 1 extra, 2 different, 1 unverifiable$/m,
	'text report: the counts of accounts');
unlike($out, qr/^public\.(lines|moves):/m, '--tables public.accounts: only accounts is checked');
my @kinds = $out =~ /^  (missing|extra|different|unverifiable) \{/mg;
is(scalar(@kinds), 4, '--examples 1: one example per kind');
like($out, qr/^DIFFERENT/m, 'text report: says the result');

# after fixing the drift by hand (the rows written as Kafka has them), verify is clean again
$node->safe_psql('postgres', qq{
UPDATE accounts SET balance = -1, note = 'bogus' WHERE id = $bogus;
DELETE FROM accounts WHERE id IN ($tomb, $new_row);
INSERT INTO accounts VALUES ($extra, 1, 'extra');
});
# the relay streams these changes now, so the bogus, tombstoned and extra keys get real records
($rc, $j, $err) = verify_json('--tables', 'public.accounts');
$a = by_table($j)->{'public.accounts'} // {};
note('accounts after the fix: ' . counts($a));
is($a->{different}, 1, 'after the fix: only the lost update still differs');
is($a->{missing} + $a->{extra}, 0, 'after the fix: nothing missing or extra');

is($relay->stop, 0, 'relay exits 0');
$k->stop;
$node->stop;
diag(sprintf('118_verify: %.0f s', time() - $t_start));
done_testing();
