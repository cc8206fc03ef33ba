# test/tap/001_concurrent_stream.pl — cdc_relay under a concurrent workload.
#
# Four pgbench clients commit a known number of transactions (inserts, updates,
# deletes, a rolled-back savepoint) and roll back as many others; a few extra
# transactions add a two-phase commit, a rolled-back prepared transaction, a
# truncate and logical messages.  Then pg_recvlogical -P cdc_relay streams the slot
# up to the WAL position recorded after the workload, and every output line is
# parsed with JSON::PP and checked against the event format (README.md, "Output format"):
#   - per-op event counts equal what was committed (and what the tables hold);
#   - every begin has a matching commit whose "events" is the number of events in
#     between, seq runs 1..n inside each transaction, xid/commit_lsn agree;
#   - commit_lsn never goes backwards;
#   - nothing from a rolled-back transaction or subtransaction appears.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use RelayTest;

my $clients = 4;
my $per_client = 150;                 # pgbench transactions (script runs) per client
my $runs = $clients * $per_client;    # each run: one committed + one rolled-back transaction

my $node = logical_node('stream', 'max_prepared_transactions = 10', 'max_connections = 30');

$node->safe_psql('postgres', qq{
CREATE TABLE items (id bigserial PRIMARY KEY, worker int NOT NULL, v int NOT NULL, note text NOT NULL);
CREATE TABLE counters (worker int PRIMARY KEY, n int NOT NULL);
INSERT INTO counters SELECT g, 0 FROM generate_series(1, $clients) g;
CREATE TABLE scratch (id int PRIMARY KEY);
});

# The slot is created after the setup above, so none of it is decoded.
$node->command_ok(
	[ 'pg_recvlogical', '-d', $node->connstr('postgres'), '-S', 'tap_slot',
	  '--create-slot', '-P', 'cdc_relay' ],
	'pg_recvlogical --create-slot -P cdc_relay');

# One pgbench script run = one committed transaction with 2 inserts, 2 updates,
# 1 delete (plus a rolled-back savepoint), then one fully rolled-back transaction.
# pgbench's client_id is 0-based; counters rows are 1-based.
my $script = q{
\set w :client_id + 1
\set v random(1, 1000000)
BEGIN;
INSERT INTO items (worker, v, note) VALUES (:w, :v, 'keep') RETURNING id AS a \gset
INSERT INTO items (worker, v, note) VALUES (:w, :v, 'keep') RETURNING id AS b \gset
UPDATE items SET v = v + 1, note = 'updated' WHERE id = :a;
DELETE FROM items WHERE id = :b;
SAVEPOINT sp;
INSERT INTO items (worker, v, note) VALUES (:w, :v, 'ROLLED-BACK');
UPDATE counters SET n = n + 100000 WHERE worker = :w;
ROLLBACK TO SAVEPOINT sp;
UPDATE counters SET n = n + 1 WHERE worker = :w;
COMMIT;
BEGIN;
INSERT INTO items (worker, v, note) VALUES (:w, :v, 'ROLLED-BACK');
UPDATE counters SET n = n + 100000 WHERE worker = :w;
DELETE FROM items WHERE worker = :w;
ROLLBACK;
};

$node->pgbench(
	"--no-vacuum --client=$clients --jobs=2 --transactions=$per_client",
	0,
	[qr{processed: $runs/$runs}],
	[],
	'concurrent pgbench workload',
	{ '001_workload' => $script });

# A few hand-written transactions of the other kinds.
$node->safe_psql('postgres', q{
BEGIN;
INSERT INTO items (worker, v, note) VALUES (0, 1, 'two-phase');
PREPARE TRANSACTION 'tap_2pc_commit';
COMMIT PREPARED 'tap_2pc_commit';
BEGIN;
INSERT INTO items (worker, v, note) VALUES (0, 2, 'ROLLED-BACK');
PREPARE TRANSACTION 'tap_2pc_abort';
ROLLBACK PREPARED 'tap_2pc_abort';
BEGIN;
INSERT INTO scratch VALUES (1), (2);
SELECT pg_logical_emit_message(true, 'tap', 'transactional hello');
TRUNCATE scratch;
COMMIT;
SELECT pg_logical_emit_message(false, 'tap', 'non-transactional hello');
});
# Expected extras: 2pc txn (1 c); scratch txn (2 c, 1 m, 1 t); 1 non-transactional m.

# pg_current_wal_insert_lsn(), not pg_current_wal_lsn(): in PostgreSQL 15 a
# non-transactional message is not flushed by itself, so the WAL *write* position
# can still be before it; the insert position is past every record written so far.
my $endpos = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
note "streaming up to $endpos";

my $outfile = PostgreSQL::Test::Utils::tempdir() . '/stream.jsonl';
my ($stdout, $stderr) = ('', '');
my $ok = IPC::Run::run(
	[ 'pg_recvlogical', '-d', $node->connstr('postgres'), '-S', 'tap_slot',
	  '--start', '--endpos', $endpos, '-f', $outfile, '--no-loop' ],
	'>', \$stdout, '2>', \$stderr,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
ok($ok, 'pg_recvlogical --endpos exits 0') or diag("stderr: $stderr");

my @lines = split /\n/, slurp_file($outfile);
note scalar(@lines) . " lines received";

# --- parse every line ----------------------------------------------------------
my $json = JSON::PP->new;
my @ev;
my $bad_json = 0;
for my $i (0 .. $#lines)
{
	my $e = eval { $json->decode($lines[$i]) };
	if (!$e || ref($e) ne 'HASH')
	{
		diag("line " . ($i + 1) . " is not a JSON object: $lines[$i]") if $bad_json++ < 5;
		next;
	}
	push @ev, $e;
}
is($bad_json, 0, 'every output line is a JSON object');

# --- transaction structure -----------------------------------------------------
my (%count, %table_ops);
my ($in_txn, $begin, $nevents, $prev_commit) = (0, undef, 0, -1);
my @struct_errors;
my ($txns, $nontx_msgs) = (0, 0);
my %row_has_key;
for my $e (@ev)
{
	my $op = $e->{op} // '<none>';
	if ($op eq 'begin')
	{
		push @struct_errors, "begin inside a transaction (xid $e->{xid})" if $in_txn;
		push @struct_errors, "begin without a valid commit_lsn"
		  unless defined lsn_num($e->{commit_lsn});
		($in_txn, $begin, $nevents) = (1, $e, 0);
	}
	elsif ($op eq 'commit')
	{
		if (!$in_txn)
		{
			push @struct_errors, "commit without begin (xid $e->{xid})";
			next;
		}
		push @struct_errors, "commit events=$e->{events}, counted $nevents (xid $e->{xid})"
		  unless defined $e->{events} && $e->{events} == $nevents;
		push @struct_errors, "commit xid $e->{xid} != begin xid $begin->{xid}"
		  unless $e->{xid} == $begin->{xid};
		push @struct_errors, "commit commit_lsn $e->{commit_lsn} != begin's $begin->{commit_lsn}"
		  unless $e->{commit_lsn} eq $begin->{commit_lsn};
		my $c = lsn_num($e->{commit_lsn}) // -1;
		push @struct_errors, "commit_lsn went backwards at $e->{commit_lsn}" if $c < $prev_commit;
		$prev_commit = $c;
		$in_txn = 0;
		$txns++;
	}
	elsif ($op eq 'm' && !$e->{transactional})
	{
		push @struct_errors, "non-transactional message inside a transaction" if $in_txn;
		push @struct_errors, "non-transactional message has commit_lsn/seq/ts"
		  if exists $e->{commit_lsn} || exists $e->{seq} || exists $e->{ts};
		$count{m_nontx}++;
		$nontx_msgs++;
	}
	else
	{
		if (!$in_txn)
		{
			push @struct_errors, "op '$op' outside a transaction";
			next;
		}
		$nevents++;
		push @struct_errors, "seq $e->{seq} where $nevents expected (xid $e->{xid})"
		  unless defined $e->{seq} && $e->{seq} == $nevents;
		push @struct_errors, "event commit_lsn/xid differ from its begin (xid $e->{xid})"
		  unless ($e->{commit_lsn} // '') eq $begin->{commit_lsn}
		  && ($e->{xid} // -1) == $begin->{xid};
		$count{$op}++;
		if ($op =~ /^[cud]$/)
		{
			$table_ops{"$e->{schema}.$e->{table}"}{$op}++;
			$row_has_key{ref($e->{key}) eq 'HASH' ? 'yes' : 'no'}++;
		}
	}
}
push @struct_errors, "stream ends inside a transaction" if $in_txn;
is(scalar(@struct_errors), 0, 'begin/commit pairing, events count, seq 1..n, commit_lsn order')
  or diag(join("\n", @struct_errors[ 0 .. ($#struct_errors < 9 ? $#struct_errors : 9) ]));

# --- counts ----------------------------------------------------------------------
# pgbench: $runs committed transactions; + 2pc insert txn + scratch txn.
is($txns, $runs + 2, 'one begin/commit pair per committed transaction');
is($table_ops{'public.items'}{c} // 0, 2 * $runs + 1, 'insert events on items');
is($table_ops{'public.items'}{u} // 0, $runs, 'update events on items');
is($table_ops{'public.items'}{d} // 0, $runs, 'delete events on items');
is($table_ops{'public.counters'}{u} // 0, $runs, 'update events on counters');
is($table_ops{'public.counters'}{c} // 0, 0, 'no insert events on counters (seeded before the slot)');
is($table_ops{'public.scratch'}{c} // 0, 2, 'insert events on scratch');
is($count{c} // 0, 2 * $runs + 3, 'total insert events');
is($count{u} // 0, 2 * $runs, 'total update events');
is($count{d} // 0, $runs, 'total delete events');
is($count{t} // 0, 1, 'one truncate event');
is($count{m} // 0, 1, 'one transactional message event');
is($nontx_msgs, 1, 'one non-transactional message event');
is($row_has_key{no} // 0, 0, 'every row event carries a key object');

# The tables agree with the stream.
my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM items');
is($rows, ($table_ops{'public.items'}{c} // 0) - ($table_ops{'public.items'}{d} // 0),
	'rows in items = insert events - delete events');
is($node->safe_psql('postgres', "SELECT count(*) FROM items WHERE note = 'updated'"),
	$runs, 'committed updated rows in items');
is($node->safe_psql('postgres', 'SELECT sum(n) FROM counters'), $runs, 'counters sum');

# Each worker's counter updates arrive in commit order: after.n = 1, 2, ..., $per_client.
my %seen_n;
my $order_ok = 1;
for my $e (grep { ($_->{op} // '') eq 'u' && ($_->{table} // '') eq 'counters' } @ev)
{
	my $w = $e->{after}{worker};
	my $want = ++$seen_n{$w};
	if (($e->{after}{n} // -1) != $want)
	{
		diag("worker $w: counter n=$e->{after}{n}, expected $want");
		$order_ok = 0;
		last;
	}
}
ok($order_ok && keys(%seen_n) == $clients, "each worker's counter updates arrive in commit order");

# --- rolled-back work never appears --------------------------------------------------
my $raw = join("\n", @lines);
unlike($raw, qr/ROLLED-BACK/, 'no rows from rolled-back transactions, savepoints or prepared transactions');
ok(!grep({ ref($_->{after}) eq 'HASH' && defined $_->{after}{n} && $_->{after}{n} >= 100000 } @ev),
	'no counter value from a rolled-back update');
my @msg = grep { ($_->{op} // '') eq 'm' } @ev;
is_deeply([ sort map { "$_->{prefix}:$_->{content}" } @msg ],
	[ 'tap:non-transactional hello', 'tap:transactional hello' ],
	'message prefixes and contents');

done_testing();
