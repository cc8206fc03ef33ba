# test/tap/119_index.pl: cdc-index against a real Kafka (1-node KRaft cluster): the relay
# and cdc-index follow two tables under pgbench writers, each killed with SIGKILL while
# they work; afterwards the SQLite rows per key equal the tables and searches return
# exactly the rows whose text holds the words.
#
# (a) docs (id, title, body: three words of a small vocabulary, n) and notes ((a, b), note),
#     seeded, then written by pgbench (upserts, deletes, primary-key changes, new rows).
#     cdc-index (FTS5 on docs.title,body and notes.note, --serve and --metrics on one
#     port) is killed with SIGKILL twice and the relay once while the writers run; each
#     is restarted.  When the writers are done: notes is truncated and refilled, the relay
#     confirms the end, and the index (read with the sqlite3 CLI) equals both tables per
#     key; the stored offsets are the topics' ends.
# (b) Searches: for each word (and a two-word query), cdc-index search --json and
#     GET /search return exactly the keys whose text holds it (computed in SQL);
#     --table and bad queries; /metrics passes promtool and shows no lag.
# (c) A record that is not JSON (produced with kcat): cdc-index exits 1 naming topic,
#     partition, offset and the --skip that steps over it; restarted with that --skip it
#     goes on, and the index still equals the table.  SIGTERM exits 0.
# (d) With relay/cdc-index-asan built (make -C relay asan): a fresh index built by the
#     AddressSanitizer binary equals the tables, and it exits 0 with no report.
#
# The relay runs at-least-once (its replays after the kill reach cdc-index);
# CDC_RELAY_TEST_ARGS='--delivery exactly-once' runs it with Kafka transactions instead
# (aborted ones skipped by read_committed; passes too).
# cdc-index is $CDC_INDEX_BIN, else the cdc-index next to $CDC_RELAY_BIN, else from PATH;
# the ASan build is $CDC_INDEX_ASAN, else cdc-index-asan next to it.
use strict;
use warnings;
use File::Basename qw(dirname);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);
use RelayTest;
use KafkaCluster;

my $t_start = time();

# the cdc-index binary under test
my $index_bin = $ENV{CDC_INDEX_BIN};
if (!$index_bin)
{
	my $next = $ENV{CDC_RELAY_BIN} ? dirname($ENV{CDC_RELAY_BIN}) . '/cdc-index' : '';
	$index_bin = ($next ne '' && -x $next) ? $next : 'cdc-index';
}
my $index_asan = $ENV{CDC_INDEX_ASAN} // dirname($index_bin) . '/cdc-index-asan';
note("cdc-index: $index_bin");

my $json = JSON::PP->new->canonical;
my @words = qw(apple banana cherry dune ember fjord grove heron iris juniper);
my $node = logical_node('index', 'max_connections = 40');
my $k = KafkaCluster->start(nodes => 1);
my $bs = $k->{bootstrap};
my $prefix = "idx$$";
my %compact = (config => { 'cleanup.policy' => 'compact' });
$k->create_topics((map { [ "$prefix.public.$_", partitions => 3, %compact ] } qw(docs notes)),
	[ "$prefix.__state", %compact ]);
note(sprintf('Kafka started and topics created in %.1f s', time() - $t_start));

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $wordlist = join(',', map { "'$_'" } @words);
sql(qq{
CREATE EXTENSION cdc_relay;
CREATE FUNCTION rand_text() RETURNS text LANGUAGE sql VOLATILE AS
  \$\$ SELECT string_agg((ARRAY[$wordlist])[1 + floor(random() * 10)::int], ' ') FROM generate_series(1, 3) \$\$;
CREATE TABLE docs (id int PRIMARY KEY, title text, body text NOT NULL, n bigint);
INSERT INTO docs SELECT g, 'doc ' || g, rand_text(), g::bigint * 1000000007 FROM generate_series(1, 3000) g;
CREATE TABLE notes (a int, b int, note text, PRIMARY KEY (a, b));
INSERT INTO notes SELECT g / 10, g % 10, rand_text() || ' ' || rand_text() FROM generate_series(1, 1000) g;
});

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $db = "$tmp/index.db";
my @relay_args = ('--topic-prefix', $prefix);
my @index_args = ('run', '-b', $bs, '--db', $db, '--topic-prefix', $prefix,
	'--table', 'public.docs:title,body', '--table', 'public.notes:note',
	'--serve', '127.0.0.1:0', '--metrics', '127.0.0.1:0');

my $n_index = 0;
sub start_index
{
	my (%opt) = @_;
	$n_index++;
	return RelayTest::start_process([ $opt{bin} // $index_bin, @index_args, @{ $opt{extra} // [] } ],
		name => $opt{name} // "index_$n_index");
}

# the index's rows of a table as key => "col|col|..." (sqlite3 CLI, JSON read by SQLite)
sub index_rows
{
	my ($file, $table, @cols) = @_;
	my $sel = join(", ", 'key', map { "quote(row ->> '\$.$_')" } @cols);
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'sqlite3', '-readonly', '-separator', "\t", $file, qq{SELECT $sel FROM "public.$table"} ],
		'<', \undef, '>', \$out, '2>', \$err);
	return undef if $err ne '';
	my %rows;
	for my $line (split /\n/, $out)
	{
		my ($key, @v) = split /\t/, $line, -1;
		$rows{$key} = join('|', @v);
	}
	return \%rows;
}

# the table's rows in the same form: key as the relay writes it, values quoted as SQLite's quote()
sub table_rows
{
	my ($table, $keycols, @cols) = @_;
	my $key = "json_build_object(" . join(', ', map { "'$_', $_" } @$keycols) . ")::jsonb";
	my $vals = join(" || '|' || ", map {
		"CASE WHEN $_ IS NULL THEN 'NULL' WHEN pg_typeof($_)::text IN ('integer', 'bigint') THEN ${_}::text "
		  . "ELSE '''' || replace(${_}::text, '''', '''''') || '''' END"
	} @cols);
	my %rows;
	for my $line (split /\n/, sql("SELECT $key, $vals FROM $table"))
	{
		my ($k, $v) = split /\|/, $line, 2;
		$rows{ $json->encode(decode_json($k)) } = $v;
	}
	return \%rows;
}

# key => value hashes: differences as text (empty when equal)
sub diff_rows
{
	my ($want, $got) = @_;
	my @d;
	for my $k (sort keys %$want)
	{
		push @d, "missing $k" unless exists $got->{$k};
		push @d, "different $k: table $want->{$k}, index $got->{$k}"
		  if exists $got->{$k} && $got->{$k} ne $want->{$k};
	}
	push @d, map { "extra $_" } grep { !exists $want->{$_} } sort keys %$got;
	return @d;
}

# index rows re-keyed canonically (the relay's keys are compact JSON in index order)
sub index_rows_canon
{
	my $r = index_rows(@_) or return undef;
	return { map { $json->encode(decode_json($_)) => $r->{$_} } keys %$r };
}

my @docs_cols = qw(title body n);
my @notes_cols = qw(note);
sub index_equals_tables
{
	my ($file) = @_;
	my $d = index_rows_canon($file, 'docs', 'id', @docs_cols) or return 0;
	my $n = index_rows_canon($file, 'notes', 'a', 'b', @notes_cols) or return 0;
	my @d = (diff_rows(table_rows('docs', ['id'], 'id', @docs_cols), $d),
		diff_rows(table_rows('notes', [ 'a', 'b' ], 'a', 'b', @notes_cols), $n));
	return @d ? \@d : 1;
}

# ---------------------------------------------------------------------------
# (a) relay + cdc-index under writers, each killed with SIGKILL

my $relay = start_relay($node, $k, @relay_args);
ok($relay->wait_for_log(qr/streaming from slot "cdc_relay" into Kafka/), '(a) the relay took the snapshot and streams')
  or BAIL_OUT('the relay did not start');
my $index = start_index();
ok($index->wait_for_log(qr/serving search and metrics on 127\.0\.0\.1:\d+/), '(a) cdc-index serves search and metrics on one port');

my $writer_sql = "$tmp/writer.sql";
PostgreSQL::Test::Utils::append_to_file($writer_sql, q{
\set id random(1, 3600)
\set id2 random(1, 3600)
\set a random(0, 120)
\set b random(0, 9)
\set op random(1, 10)
BEGIN;
INSERT INTO docs VALUES (:id, 'doc ' || :id, rand_text(), :op) ON CONFLICT (id) DO UPDATE SET body = rand_text(), n = docs.n + 1;
\if :op <= 2
DELETE FROM docs WHERE id = :id2;
\elif :op = 3
UPDATE docs SET id = id + 100000, title = NULL WHERE id = :id2 AND NOT EXISTS (SELECT 1 FROM docs x WHERE x.id = :id2 + 100000);
\endif
\if :op <= 6
INSERT INTO notes VALUES (:a, :b, rand_text()) ON CONFLICT (a, b) DO UPDATE SET note = notes.note || ' ' || rand_text();
\else
DELETE FROM notes WHERE a = :a AND b = :b;
\endif
COMMIT;
});
my $writers = RelayTest::start_process(
	[ 'pgbench', '-n', '-c', '2', '-j', '2', '--max-tries', '20', '-R', '150', '-T', '14', '-f', $writer_sql,
	  $node->connstr('postgres') ],
	name => 'writers');

sub applied_total
{
	my ($p) = @_;
	my @n = ($p->log_content =~ /caught up with \d+ partitions \((\d+) messages applied\)/g);
	return $n[-1];
}

sleep(2);
ok($index->kill('KILL'), '(a) kill -9 cdc-index while it applies');
$index->finish;
$index = start_index();
ok($index->wait_for_log(qr/from stored offsets/), '(a) cdc-index restarts from its stored offsets');
like($index->log_content, qr/following 6 partitions of 2 topics \(6 from stored offsets, 0 from the beginning\)/,
	'(a) every partition resumes from an offset stored in SQLite');
sleep(2);
ok($relay->kill('KILL'), '(a) kill -9 the relay under the writers');
$relay->finish;
sleep(1);
$relay = start_relay($node, $k, @relay_args);
ok($relay->wait_for_log(qr/streaming from slot "cdc_relay" into Kafka/), '(a) a new relay streams on');
sleep(2);
ok($index->kill('KILL'), '(a) kill -9 cdc-index again');
$index->finish;
$index = start_index();
ok($index->wait_for_log(qr/from stored offsets/), '(a) cdc-index restarts again');

is($writers->finish(120), 0, '(a) the writers ran to completion');
# a truncate between rows in every partition, read as a backlog: Kafka orders the
# truncate (key "truncate") only within its own partition, cdc-index orders it by LSN
is($index->stop, 0, '(a) SIGTERM: cdc-index exits 0');
sql("INSERT INTO notes SELECT 1000 + g, 0, 'before the truncate' FROM generate_series(1, 300) g");
sql("UPDATE notes SET note = 'updated before the truncate' WHERE a < 50");
sql("TRUNCATE notes");
sql("INSERT INTO notes SELECT 2000 + g, 0, 'after the truncate apple' FROM generate_series(1, 300) g");
sql("INSERT INTO notes VALUES (1, 1, 'after the truncate apple'), (2, 2, 'banana after'), (500, 5, NULL)");
$index = start_index();
ok($index->wait_for_log(qr/from stored offsets/), '(a) cdc-index restarts after the truncate');
my $end = RelayTest::insert_lsn($node);
ok(wait_for_confirmed($node, 'cdc_relay', $end), '(a) the relay confirms the end of the writes');

my $eq;
wait_until(sub { $eq = index_equals_tables($db); !ref $eq && $eq }, 'the index equals the tables', 60);
if (ref $eq)
{
	diag("differences:\n" . join("\n", @{$eq}[ 0 .. ($#$eq < 20 ? $#$eq : 19) ]));
	$eq = 0;
}
ok($eq, '(a) after kill -9 of cdc-index (twice) and of the relay: the index equals both tables per key');
my $nrows = sql('SELECT count(*) FROM docs') + sql('SELECT count(*) FROM notes');
cmp_ok($nrows, '>', 2000, "(a) and they are not empty ($nrows rows)");
is(sql('SELECT count(*) FROM notes'), '303', '(a) the truncate was applied (notes holds only the rows inserted after it)');

# the stored offsets are the topics' ends (end offsets, as kcat sees them)
my %ends;
for my $t (qw(docs notes))
{
	my $e = $k->end_offsets("$prefix.public.$t");
	$ends{"$prefix.public.$t|$_"} = $e->{$_} for keys %$e;
}
my $stored = {};
wait_until(sub {
	my $o = `sqlite3 -readonly -separator '|' '$db' 'SELECT topic, partition, next_offset FROM cdc_index_offsets'`;
	$stored = { map { /^(.*)\|(\d+)$/ ? ($1 => $2) : () } split /\n/, $o };
	$json->encode($stored) eq $json->encode(\%ends);
}, 'stored offsets at the ends', 30);
is_deeply($stored, \%ends, '(a) the offsets stored in SQLite are the end of every partition');

# ---------------------------------------------------------------------------
# (b) searches: exactly the rows whose text holds the words

my ($port) = $index->log_content =~ /serving search and metrics on 127\.0\.0\.1:(\d+)/;
my $http = HTTP::Tiny->new(timeout => 30);

sub search_cli
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $index_bin, 'search', '--db', $db, '--json', '--limit', '100000', @args ],
		'<', \undef, '>', \$out, '2>', \$err);
	return ($? >> 8, $out, $err);
}

sub keys_of { my ($res) = @_; return [ sort map { $json->encode($_->{key}) . " $_->{table}" } @{ $res->{results} } ]; }

sub expected_keys
{
	my ($cond_docs, $cond_notes) = @_;
	my @k;
	push @k, map { qq({"id":$_} public.docs) } split /\n/, sql("SELECT id FROM docs WHERE $cond_docs") if $cond_docs;
	push @k, map { my ($na, $nb) = split /\|/; qq({"a":$na,"b":$nb} public.notes) } split /\n/,
	  sql("SELECT a, b FROM notes WHERE $cond_notes") if $cond_notes;
	return [ sort @k ];
}

my $search_ok = 1;
for my $w (@words[ 0 .. 4 ])
{
	my $want = expected_keys("body ~ '\\m$w\\M' OR title ~ '\\m$w\\M'", "note ~ '\\m$w\\M'");
	my ($rc, $out, $err) = search_cli($w);
	my $got = $rc == 0 ? keys_of(decode_json($out)) : [];
	$search_ok &&= is_deeply($got, $want, "(b) cdc-index search '$w': exactly the " . scalar(@$want) . ' rows holding it');
	my $r = $http->get("http://127.0.0.1:$port/search?q=$w&limit=10000");
	is_deeply($r->{success} ? keys_of(decode_json($r->{content})) : [$r->{status}], $want, "(b) GET /search?q=$w: the same");
}
my $want2 = expected_keys("body ~ '\\mapple\\M' AND body ~ '\\mbanana\\M'", '');
my ($rc2, $out2) = search_cli('--table', 'public.docs', 'apple banana');
is_deeply(keys_of(decode_json($out2)), $want2, "(b) 'apple banana' in public.docs: the rows holding both words");
my $r = $http->get("http://127.0.0.1:$port/search?q=apple&table=public.docs&limit=3");
my $res = decode_json($r->{content});
is(scalar(@{ $res->{results} }), 3, '(b) GET /search with table and limit: 3 results');
ok(!(grep { $_->{table} ne 'public.docs' || $_->{snippet} !~ /\[apple\]/i } @{ $res->{results} }),
	'(b) each from that table, with the word marked in its snippet');
my @ranks = map { $_->{rank} } @{ $res->{results} };
is_deeply(\@ranks, [ sort { $a <=> $b } @ranks ], '(b) best first (bm25, lower is better)');
$r = $http->get("http://127.0.0.1:$port/search?q=%22unterminated");
is($r->{status}, 400, '(b) a bad query: 400');
like(decode_json($r->{content})->{error}, qr/bad query/, '(b) with the reason in JSON');
my ($rc3, $out3, $err3) = search_cli('--table', 'public.nosuch', 'apple');
is($rc3, 1, '(b) search of an unknown table exits 1');
like($err3, qr/no table "public\.nosuch"/, '(b) and says so');

# bad usage: exit 2 with the reason
for my $case ([ [ 'run', '--db', $db ], qr/run needs -b BROKERS/ ], [ [ 'search', '--db', $db ], qr/one QUERY/ ],
	[ [ 'run', '-b', $bs, '--db', $db, '--topic-prefix', $prefix, '--table', 'public.docs:rank' ], qr/reserved/ ])
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ $index_bin, @{ $case->[0] } ], '<', \undef, '>', \$out, '2>', \$err);
	is($? >> 8, 2, "(b) cdc-index @{ $case->[0] }: exit 2");
	like($err, $case->[1], '(b) with the reason');
}

# metrics: promtool accepts them, no lag once caught up
my $metrics = '';
wait_until(sub {
	$metrics = $http->get("http://127.0.0.1:$port/metrics")->{content} // '';
	$metrics =~ /cdc_index_lag_messages/ && $metrics !~ /cdc_index_lag_messages\{[^}]*\} [1-9]/;
}, 'no lag', 30);
my ($pout, $perr) = ('', '');
my $prom_ok = IPC::Run::run([ 'promtool', 'check', 'metrics' ], '<', \$metrics, '>', \$pout, '2>', \$perr);
ok($prom_ok, '(b) promtool check metrics accepts /metrics') or diag("$pout$perr\n$metrics");
unlike($metrics, qr/cdc_index_lag_messages\{[^}]*\} [1-9]/, '(b) cdc_index_lag_messages is 0 everywhere');
like($metrics, qr/^cdc_index_messages_applied_total [1-9]\d*$/m, '(b) cdc_index_messages_applied_total counts');
for my $key (sort keys %ends)
{
	my ($t, $p) = split /\|/, $key;
	like($metrics, qr/^cdc_index_applied_offset\{topic="\Q$t\E",partition="$p"\} $ends{$key}$/m,
		"(b) cdc_index_applied_offset of $t/$p is its end ($ends{$key})");
}

# ---------------------------------------------------------------------------
# (c) a record that is not JSON: stop with the way out; --skip steps over it

my ($kout, $kerr) = ('', '');
IPC::Run::run([ 'kcat', '-P', '-b', $bs, '-t', "$prefix.public.docs", '-k', '{"id":777777}' ],
	'<', \"this is not json", '>', \$kout, '2>', \$kerr);
my $bad_rc = $index->finish(60);
is($bad_rc, 1, '(c) cdc-index exits 1 on a record that is not JSON');
my ($bad_at) = $index->log_content =~ /bad record in topic "\Q$prefix\E\.public\.docs" partition \d+ offset \d+ \(key \{"id":777777\}\): the value is not JSON/
  ? $index->log_content =~ /--skip (\S+:\d+:\d+)/ : ();
ok($bad_at, "(c) it names the record and the --skip that steps over it (--skip " . ($bad_at // '?') . ')');
sql("UPDATE docs SET body = 'skipped past heron' WHERE id = (SELECT min(id) FROM docs)");
$index = start_index(extra => [ '--skip', $bad_at // 'x:0:0' ]);
ok($index->wait_for_log(qr/skipping the record at \Q$bad_at\E/), '(c) restarted with --skip, it steps over the record');
wait_until(sub { $eq = index_equals_tables($db); !ref $eq && $eq }, 'the index equals the tables', 30);
ok(!ref $eq && $eq, '(c) and goes on: the index equals the tables again');

# a tombstone produced with kcat (null value) removes its key from the index
my $victim = sql("SELECT min(id) FROM docs WHERE id > 10");
($kout, $kerr) = ('', '');
# (kcat drops an empty line: key TAB nothing, and -Z makes the empty value null)
IPC::Run::run([ 'kcat', '-P', '-Z', '-K', "\t", '-b', $bs, '-t', "$prefix.public.docs" ],
	'<', \qq({"id":$victim}\t\n), '>', \$kout, '2>', \$kerr);
ok(wait_until(sub { !exists(index_rows_canon($db, 'docs', 'id')->{qq({"id":$victim})}) }, 'the tombstone', 30),
	"(c) a tombstone for {\"id\":$victim} (kcat) removes it from the index");
sql("DELETE FROM docs WHERE id = $victim");
is($index->stop, 0, '(c) SIGTERM: cdc-index exits 0');

# ---------------------------------------------------------------------------
# (d) the AddressSanitizer build: a fresh index, then SIGTERM, no report

SKIP:
{
	skip("no $index_asan (make -C relay asan builds it)", 3) unless -x $index_asan;
	local $ENV{ASAN_OPTIONS} = 'detect_leaks=1:abort_on_error=0:exitcode=99';
	my $adb = "$tmp/asan.db";
	@index_args = map { $_ eq $db ? $adb : $_ } @index_args;
	my $ai = start_index(bin => $index_asan, name => 'index_asan', extra => [ '--skip', $bad_at // 'x:0:0' ]);
	my $aeq;
	wait_until(sub { $aeq = index_equals_tables($adb); !ref $aeq && $aeq }, 'the ASan index equals the tables', 90);
	ok(!ref $aeq && $aeq, '(d) cdc-index-asan builds an index equal to the tables');
	my $r2 = $http->get("http://127.0.0.1:" . (($ai->log_content =~ /on 127\.0\.0\.1:(\d+)/)[0] // 1) . "/search?q=heron");
	ok($r2->{success}, '(d) and answers a search');
	is($ai->stop, 0, '(d) it exits 0 on SIGTERM with no AddressSanitizer/LeakSanitizer report')
	  or diag($ai->log_content);
}

is($relay->stop, 0, 'the relay exits 0');
note(sprintf('119_index: %.1f s', time() - $t_start));
done_testing();
