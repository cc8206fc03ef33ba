# test/tap/002_restart_resume.pl — no change is lost across a streaming stop and a
# server restart, and cdc_relay is refused unless output_plugin_libraries names it.
#
# Part 1:
#   batch 1 committed -> pg_recvlogical --endpos streams it (file 1), the slot's
#   confirmed_flush_lsn advances;
#   batch 2 committed, then a background pg_recvlogical (reconnecting, no --no-loop)
#   streams to file 2 while a writer inserts rows one per transaction (batch 3) and
#   the server is restarted under both of them; after the restart batch 4 is
#   committed and a last pg_recvlogical --endpos streams the rest (file 3).
#   The union of the three files must hold every committed change.  Delivery is
#   at-least-once: after a reconnect the server resends from the slot's confirmed
#   position, and in PostgreSQL 15 a logical slot's confirmed_flush_lsn advanced by
#   client feedback is not written to disk at shutdown, so after the restart it
#   falls back to its last saved value and file 3 repeats what files 1-2 already
#   hold (pg_recvlogical itself resumes from its own position, so it may repeat
#   only the transaction it was in).  Events are therefore deduplicated by
#   commit_lsn+seq (begin/commit by commit_lsn), and every duplicate must be an
#   exact duplicate.
#   The table contents are the truth: every row has exactly one insert event, every
#   insert event's row is in the table, and the update count matches.
#
# Part 2: on a server whose output_plugin_libraries lacks cdc_relay, creating a
#   cdc_relay slot fails with an error naming output_plugin_libraries; so does
#   using an existing slot after the setting is removed; adding it back with ALTER
#   SYSTEM (items unquoted) + reload fixes it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use RelayTest;
use Time::HiRes qw(usleep);

my $timeout = $PostgreSQL::Test::Utils::timeout_default;
my $tmp = PostgreSQL::Test::Utils::tempdir();

my $node = logical_node('resume', 'max_connections = 20');

$node->safe_psql('postgres',
	'CREATE TABLE t (id bigserial PRIMARY KEY, batch int NOT NULL, v text NOT NULL)');
$node->command_ok(
	[ 'pg_recvlogical', '-d', $node->connstr('postgres'), '-S', 'resume_slot',
	  '--create-slot', '-P', 'cdc_relay' ],
	'create cdc_relay slot');

# $n transactions of 3 inserts + 1 update each.
sub write_batch
{
	my ($batch, $n) = @_;
	my $sql = '';
	for my $i (1 .. $n)
	{
		$sql .= "BEGIN;\n"
		  . "INSERT INTO t (batch, v) VALUES ($batch, 'b$batch-$i-1'), ($batch, 'b$batch-$i-2'), ($batch, 'b$batch-$i-3');\n"
		  . "UPDATE t SET v = v || '-upd' WHERE v = 'b$batch-$i-1';\n"
		  . "COMMIT;\n";
	}
	$node->safe_psql('postgres', $sql);
}

sub current_lsn { return $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'); }

sub recv_upto
{
	my ($endpos, $file, $name) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[ 'pg_recvlogical', '-d', $node->connstr('postgres'), '-S', 'resume_slot',
		  '--start', '--endpos', $endpos, '-f', $file, '--no-loop' ],
		'>', \$out, '2>', \$err, IPC::Run::timeout($timeout));
	ok($ok, $name) or diag("stderr: $err");
}

# --- batch 1, streamed with --endpos -----------------------------------------------
my $created_at = confirmed_flush($node, 'resume_slot');
write_batch(1, 20);
my $lsn1 = current_lsn();
write_batch(2, 20);
recv_upto($lsn1, "$tmp/part1.jsonl", 'stream batch 1 with --endpos');
my $flushed = confirmed_flush($node, 'resume_slot');
ok(lsn_cmp($flushed, $created_at) > 0, "slot confirmed_flush_lsn advanced ($created_at -> $flushed)");

# --- batch 3 + restart under a live stream -------------------------------------------
my $recv = RelayTest::start_process(
	[ 'pg_recvlogical', '-d', $node->connstr('postgres'), '-S', 'resume_slot',
	  '--start', '-f', "$tmp/part2.jsonl", '-F', '1', '-s', '1' ],
	name => 'recvlogical');

# A writer committing one row per transaction (COMMIT inside a DO loop) until the
# restart kills its session; whatever committed is in the table, which is the truth
# we compare with.
my $writer = RelayTest::start_process(
	[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c',
	  q{DO $$ BEGIN FOR i IN 1..100000 LOOP INSERT INTO t (batch, v) VALUES (3, 'b3-' || i); COMMIT; END LOOP; END $$} ],
	name => 'writer');

wait_until(sub { $node->safe_psql('postgres', 'SELECT count(*) FROM t WHERE batch = 3') >= 500 },
	'the writer to commit 500 rows')
  or die 'writer made no progress';
$node->restart;    # fast shutdown: terminates the writer and the walsender
$writer->finish;
note 'writer after restart: ' . ($writer->log_content =~ s/\n/ | /gr);
my $batch3 = $node->safe_psql('postgres', 'SELECT count(*) FROM t WHERE batch = 3');
cmp_ok($batch3, '>=', 500, "writer committed rows before the restart ($batch3)");
cmp_ok($batch3, '<', 100000, 'restart interrupted the writer');

# --- batch 4 after the restart, then stop the live stream and stream the rest ------
write_batch(4, 20);
my $lsn_end = current_lsn();

# Give the reconnecting pg_recvlogical (it retries every 5 s) up to 60 s to write the
# last batch-4 row, then stop it with SIGINT (clean exit); file 3 gets whatever is left.
wait_until(sub { -e "$tmp/part2.jsonl" && slurp_file("$tmp/part2.jsonl") =~ /b4-20-3/ },
	'the live pg_recvlogical to stream batch 4', 60);
usleep(500_000);
$recv->kill('INT');
$recv->finish;
note 'live pg_recvlogical stderr: ' . ($recv->log_content =~ s/\n/ | /gr);
like(-e "$tmp/part2.jsonl" ? slurp_file("$tmp/part2.jsonl") : '', qr/b4-20-3/,
	'live pg_recvlogical reconnected after the restart and streamed batch 4');
note 'slot confirmed_flush_lsn before the last stream: ' . confirmed_flush($node, 'resume_slot') . ", end: $lsn_end";
recv_upto($lsn_end, "$tmp/part3.jsonl", 'stream the rest with --endpos after the restart');

# --- union, dedupe, compare with the table ------------------------------------------
my $json = JSON::PP->new->canonical;
my (%seen, @events);
my ($lines, $bad, $dups, $bad_dups) = (0, 0, 0, 0);
for my $part (1 .. 3)
{
	my $file = "$tmp/part$part.jsonl";
	next unless -e $file;
	my @part_lines = split /\n/, slurp_file($file);
	note "file $part: " . scalar(@part_lines) . ' lines';
	for my $line (@part_lines)
	{
		$lines++;
		my $e = eval { $json->decode($line) };
		if (!$e || ref($e) ne 'HASH') { $bad++; diag("not JSON: $line") if $bad < 5; next; }
		my $key =
		    $e->{op} eq 'begin'  ? "$e->{commit_lsn}/begin"
		  : $e->{op} eq 'commit' ? "$e->{commit_lsn}/commit"
		  : defined $e->{seq}    ? "$e->{commit_lsn}/$e->{seq}"
		  :                        'nontx/' . $json->encode($e);
		my $canon = $json->encode($e);
		if (exists $seen{$key})
		{
			$dups++;
			if ($seen{$key} ne $canon) { $bad_dups++; diag("different duplicate for $key:\n $seen{$key}\n $canon") if $bad_dups < 5; }
			next;
		}
		$seen{$key} = $canon;
		push @events, $e;
	}
}
note "$lines lines received, " . scalar(@events) . " unique events, $dups duplicates";
is($bad, 0, 'every line is a JSON object');
is($bad_dups, 0, 'every duplicate (same commit_lsn+seq) is an exact duplicate');

# Structure of the deduplicated stream.
my @errors;
my ($in, $begin, $n) = (0, undef, 0);
for my $e (@events)
{
	if ($e->{op} eq 'begin')
	{
		push @errors, "begin inside a transaction" if $in;
		($in, $begin, $n) = (1, $e, 0);
	}
	elsif ($e->{op} eq 'commit')
	{
		push @errors, "commit without begin" unless $in;
		push @errors, "events=$e->{events} but $n seen (xid $e->{xid})" unless $e->{events} == $n;
		$in = 0;
	}
	else
	{
		$n++;
		push @errors, "seq $e->{seq} where $n expected" unless ($e->{seq} // -1) == $n;
	}
}
push @errors, 'ends inside a transaction' if $in;
is(scalar(@errors), 0, 'deduplicated stream: begin/commit pairs, events counts, seq 1..n')
  or diag(join("\n", @errors[ 0 .. ($#errors < 9 ? $#errors : 9) ]));

my %ins;
my ($upd, $other, $ins_dup) = (0, 0, 0);
for my $e (@events)
{
	next unless $e->{op} =~ /^[cud]$/;
	if ($e->{op} eq 'c') { $ins_dup++ if $ins{ $e->{after}{id} }++; }
	elsif ($e->{op} eq 'u') { $upd++; }
	else { $other++; }
}
my %table = map { $_ => 1 } split /\n/, $node->safe_psql('postgres', 'SELECT id FROM t ORDER BY id');
my @missing = grep { !$ins{$_} } sort { $a <=> $b } keys %table;
my @phantom = grep { !$table{$_} } sort { $a <=> $b } keys %ins;
is(scalar(@missing), 0, 'no committed row is missing from the stream')
  or diag('missing ids: ' . join(',', @missing[ 0 .. ($#missing < 19 ? $#missing : 19) ]));
is(scalar(@phantom), 0, 'no streamed insert that is not in the table')
  or diag('phantom ids: ' . join(',', @phantom[ 0 .. ($#phantom < 19 ? $#phantom : 19) ]));
is($ins_dup, 0, 'each row inserted exactly once after deduplication');
is(scalar(keys %ins), 3 * 60 + $batch3, 'insert events = 3 x 60 batch rows + writer rows');
is($upd, 60, 'one update event per batch transaction');
is($other, 0, 'no delete events');
my %per_batch;
$per_batch{ $_->{after}{batch} }++ for grep { $_->{op} eq 'c' } @events;
is_deeply(\%per_batch, { 1 => 60, 2 => 60, 3 => $batch3, 4 => 60 }, 'insert events per batch');

# --- part 2: output_plugin_libraries must name cdc_relay ------------------------------
# logical_node's own output_plugin_libraries line comes first: this later one wins
my $strict = logical_node('strict', "output_plugin_libraries = 'pgoutput, test_decoding'");
is($strict->safe_psql('postgres', 'SHOW output_plugin_libraries'), 'pgoutput, test_decoding',
	'the strict server does not allow cdc_relay');

my ($ret, $out, $err) = $strict->psql('postgres',
	"SELECT pg_create_logical_replication_slot('refused', 'cdc_relay')");
isnt($ret, 0, 'SQL slot creation with cdc_relay refused when not in output_plugin_libraries');
like($err, qr/output_plugin_libraries/, 'SQL error names output_plugin_libraries');
like($err, qr/cdc_relay/, 'SQL error names cdc_relay');

($out, $err) = ('', '');
IPC::Run::run(
	[ 'pg_recvlogical', '-d', $strict->connstr('postgres'), '-S', 'refused2',
	  '--create-slot', '-P', 'cdc_relay' ],
	'>', \$out, '2>', \$err, IPC::Run::timeout($timeout));
isnt($?, 0, 'pg_recvlogical --create-slot -P cdc_relay refused');
like($err, qr/output_plugin_libraries/, 'pg_recvlogical error names output_plugin_libraries');

# An existing slot stops working when cdc_relay is taken out of the list ...
$strict->safe_psql('postgres',
	"ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, cdc_relay; SELECT pg_reload_conf();");
$strict->poll_query_until('postgres',
	"SELECT current_setting('output_plugin_libraries') LIKE '%cdc_relay%'")
  or die 'reload did not take effect';
$strict->safe_psql('postgres',
	"SELECT pg_create_logical_replication_slot('allowed', 'cdc_relay'); CREATE TABLE x (id int PRIMARY KEY); INSERT INTO x VALUES (1);");
$strict->safe_psql('postgres',
	"ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding; SELECT pg_reload_conf();");
$strict->poll_query_until('postgres',
	"SELECT current_setting('output_plugin_libraries') NOT LIKE '%cdc_relay%'")
  or die 'reload did not take effect';
($ret, $out, $err) = $strict->psql('postgres',
	"SELECT count(*) FROM pg_logical_slot_peek_changes('allowed', NULL, NULL)");
isnt($ret, 0, 'using a cdc_relay slot refused after removing it from output_plugin_libraries');
like($err, qr/output_plugin_libraries/, 'that error names output_plugin_libraries too');

# ... and works again after the documented fix.
$strict->safe_psql('postgres',
	"ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, cdc_relay; SELECT pg_reload_conf();");
$strict->poll_query_until('postgres',
	"SELECT current_setting('output_plugin_libraries') LIKE '%cdc_relay%'")
  or die 'reload did not take effect';
$out = $strict->safe_psql('postgres',
	"SELECT data FROM pg_logical_slot_get_changes('allowed', NULL, NULL)");
like($out, qr/"table"\s*:\s*"x"/, 'ALTER SYSTEM SET output_plugin_libraries = ..., cdc_relay + reload fixes it');

done_testing();
