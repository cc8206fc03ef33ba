# test/tap/124_schema_events.pl: schema events and DDL capture end to end (real
# PostgreSQL, the real relay in exactly-once mode, a 1-node real Kafka, kcat).
#
# While the relay streams, a captured table goes through every kind of shape change the
# plugin follows (a column added, renamed, retyped, dropped, made NOT NULL; the key
# changed to a replica identity index and to a new primary key; replica identity FULL;
# a DDL between two changes of one transaction; the table renamed), with a change after
# each; another table never changes.  Then a consumer written here, reading only
# <prefix>.schemas and the table topics:
#   - rebuilds each table's shape from the schema events alone (the last one per key)
#     and compares it with the catalog (pg_attribute, format_type, pg_index,
#     relreplident): equal for the changed table, for the renamed one and for the table
#     that never changed (its shape comes from the snapshot);
#   - orders schema events and row events by their event ids (commit LSN, seq) and checks
#     that every row event ("r" from the snapshot, "c"/"u" from the stream) has exactly
#     the columns and key columns of the shape in force at its position;
#   - checks that each shape was sent once (no two consecutive equal schema events for a
#     table in the stream).
# <prefix>.ddl holds each DDL statement run, in commit order, with its command tag, and
# nothing of a rolled-back DDL.
# An online snapshot of a table whose column was added with no row changed since (the
# plugin has written no schema event for the new shape): the relay produces the chunks'
# shape (snapshot=true, event id <commit_lsn>/s/<oid>/<chunk>) before their "r" rows, once.
# A DDL (and a change after it, so the stream produces the new shape) between a chunk's
# read and its watermark: the chunk is read again, so its older shape never follows the
# stream's newer one (a later change would be read with the wrong shape).
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
my $node = logical_node('schema');
$node->safe_psql('postgres', q{
	CREATE EXTENSION cdc_relay;
	CREATE TABLE stable_t (id int PRIMARY KEY, v varchar(30) NOT NULL);
	INSERT INTO stable_t SELECT g, 'v' || g FROM generate_series(1, 20) g;
	CREATE TABLE evolve (id int PRIMARY KEY, a int, b text);
	INSERT INTO evolve SELECT g, g, 'b' || g FROM generate_series(1, 10) g;
	CREATE TABLE quiet (id int PRIMARY KEY, v text);
	INSERT INTO quiet SELECT g, 'q' || g FROM generate_series(1, 30) g;
	CREATE TABLE quiet2 (id int PRIMARY KEY, v text);
	INSERT INTO quiet2 SELECT g, 'q' || g FROM generate_series(1, 5) g;
});

my $prefix = "schema$$";
my $k = KafkaCluster->start(nodes => 1);
note(sprintf('Kafka started in %.1f s', time() - $t_start));

my $relay = start_relay($node, $k, '--topic-prefix', $prefix, '--delivery', 'exactly-once',
	'--txn-interval-ms', '200', '--snapshot-chunk-rows', '10');
ok($relay->wait_for_log(qr/streaming from slot "cdc_relay" into Kafka/, 120), 'relay snapshots, then streams')
  or BAIL_OUT('relay does not stream: ' . $relay->log_content);

# The DDL statements, each followed by changes; every statement is captured in this order.
my @steps = (
	[ 'ALTER TABLE evolve ADD COLUMN c numeric(8,2)', "INSERT INTO evolve VALUES (11, 11, 'b11', 1.25)" ],
	[ 'ALTER TABLE evolve RENAME COLUMN b TO label', "UPDATE evolve SET label = 'l1' WHERE id = 1" ],
	[ 'ALTER TABLE evolve ALTER COLUMN a TYPE bigint', 'UPDATE evolve SET a = 5000000000 WHERE id = 2' ],
	[ 'ALTER TABLE evolve ALTER COLUMN label SET NOT NULL', "UPDATE evolve SET label = 'l3' WHERE id = 3" ],
	[ 'ALTER TABLE evolve DROP COLUMN c', "INSERT INTO evolve VALUES (12, 12, 'b12')" ],
	[ 'CREATE UNIQUE INDEX evolve_label ON evolve (label)', undef ],
	[ 'ALTER TABLE evolve REPLICA IDENTITY USING INDEX evolve_label', 'UPDATE evolve SET a = 40 WHERE id = 4' ],
	[ 'ALTER TABLE evolve REPLICA IDENTITY FULL', 'UPDATE evolve SET a = 50 WHERE id = 5' ],
	[ 'ALTER TABLE evolve REPLICA IDENTITY DEFAULT', undef ],
	[ 'ALTER TABLE evolve DROP CONSTRAINT evolve_pkey', undef ],
	[ 'ALTER TABLE evolve ADD PRIMARY KEY (id, a)', 'UPDATE evolve SET label = \'l6\' WHERE id = 6' ],
);
my @ddl_run;
for my $s (@steps)
{
	$node->safe_psql('postgres', $s->[0]);
	push @ddl_run, $s->[0];
	$node->safe_psql('postgres', $s->[1]) if defined $s->[1];
}
# a DDL between two changes of one transaction: the second change has the new shape
$node->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO evolve VALUES (13, 13, 'b13');
	ALTER TABLE evolve ADD COLUMN d text DEFAULT 'dflt';
	INSERT INTO evolve VALUES (14, 14, 'b14', 'd14');
	COMMIT;
});
push @ddl_run, q{ALTER TABLE evolve ADD COLUMN d text DEFAULT 'dflt'};
# rolled back: not in the ddl topic, and no schema event
$node->safe_psql('postgres', q{
	BEGIN;
	ALTER TABLE evolve ADD COLUMN gone int;
	INSERT INTO evolve VALUES (15, 15, 'b15', 'd15', 15);
	ROLLBACK;
});
# the table renamed: its events (and schema event) carry the new name
$node->safe_psql('postgres', 'ALTER TABLE evolve RENAME TO evolved');
push @ddl_run, 'ALTER TABLE evolve RENAME TO evolved';
$node->safe_psql('postgres', "INSERT INTO evolved VALUES (16, 16, 'b16', 'd16')");

# quiet: a column added, no row changed since, then an online snapshot (3 chunks of 10 rows)
$node->safe_psql('postgres', q{ALTER TABLE quiet ADD COLUMN extra int DEFAULT 7});
push @ddl_run, 'ALTER TABLE quiet ADD COLUMN extra int DEFAULT 7';
my $job = $node->safe_psql('postgres', q{SELECT cdc_relay.request_snapshot('public.quiet')});
ok(wait_until(sub { $node->safe_psql('postgres', "SELECT status FROM cdc_relay.snapshot_jobs WHERE id = $job") eq 'done' },
		'the online snapshot of quiet', 120), 'the online snapshot of quiet is done')
  or diag($relay->log_content);

# quiet2: the watermark of its only chunk waits (the job row locked) while a DDL and a change
# commit; the relay is stopped meanwhile so that the lock comes after the request
$relay->kill('STOP');
my $job2 = $node->safe_psql('postgres', q{SELECT cdc_relay.request_snapshot('public.quiet2')});
my $locker = RelayTest::start_process(
	[ 'psql', '-X', '-d', $node->connstr('postgres'), '-c',
		'BEGIN; LOCK TABLE cdc_relay.snapshot_jobs IN EXCLUSIVE MODE; SELECT pg_sleep(3600) /* quiet2 lock */' ],
	name => 'locker');
wait_until(sub { $node->safe_psql('postgres', q{SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
	WHERE c.relname = 'snapshot_jobs' AND l.mode = 'ExclusiveLock' AND l.granted}) == 1 }, 'snapshot_jobs locked');
$relay->kill('CONT');
ok(wait_until(sub { $node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
	WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE cdc_relay.snapshot_jobs%'}) == 1 },
		'the watermark of quiet2\'s chunk waiting', 120), 'quiet2: its chunk read, its watermark waits');
$node->safe_psql('postgres', q{ALTER TABLE quiet2 ADD COLUMN extra2 int DEFAULT 9});
push @ddl_run, 'ALTER TABLE quiet2 ADD COLUMN extra2 int DEFAULT 9';
$node->safe_psql('postgres', q{INSERT INTO quiet2 (id, v) VALUES (100, 'after the DDL')});
$node->safe_psql('postgres', q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	WHERE query LIKE '%quiet2 lock%' AND pid <> pg_backend_pid()});
$locker->finish;
ok(wait_until(sub { $node->safe_psql('postgres', "SELECT status FROM cdc_relay.snapshot_jobs WHERE id = $job2") eq 'done' },
		'the online snapshot of quiet2', 120), 'the online snapshot of quiet2 is done')
  or diag($relay->log_content);
like($relay->log_content, qr/online snapshot job $job2: the table's shape changed while chunk 1 was read: reading it again/,
	'quiet2: the chunk was read again');
# a change after the job: the plugin sent this shape already; the last schema event before it must be right
$node->safe_psql('postgres', q{INSERT INTO quiet2 (id, v) VALUES (101, 'after the job')});

ok(wait_for_confirmed($node, 'cdc_relay', RelayTest::insert_lsn($node), 120), 'relay confirmed everything');

# ---- the consumer: shapes from <prefix>.schemas alone -------------------------------------------
my $json = JSON::PP->new->canonical;
my @schemas = consume($k, "$prefix.schemas");
ok(scalar(@schemas) > 0, 'the schemas topic has events') or diag($relay->log_content);

# event position from the headers: (commit LSN, seq); the snapshot's shapes come first (seq 0)
sub position
{
	my ($m) = @_;
	my @p = split m{/}, $m->{headers}{event_id} // '';
	# <X/Y>/<seq>[/schema] or <X/Y>/s/<relid> or <X/Y>/r/<relid>/<n>
	my $commit = lsn_num("$p[0]/$p[1]");
	return [ $commit, 0, 0 ] if ($p[2] // '') eq 's';
	return [ $commit, 0, 1 + $p[4] ] if ($p[2] // '') eq 'r';
	# a schema event takes the seq of the event after it and goes before it
	return [ $commit, $p[2], ($p[3] // '') eq 'schema' ? 0 : 1 ];
}

sub cmp_pos
{
	my ($a, $b) = @_;
	return $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] || $a->[2] <=> $b->[2];
}

my (%last_shape, %events_of);
my $bad_schema = 0;
for my $m (@schemas)
{
	my $ev = eval { decode_json($m->{value}) };
	my $key = eval { decode_json($m->{key}) };
	if (!$ev || !$key || ($ev->{op} // '') ne 's' || $key->{schema} ne $ev->{schema} || $key->{table} ne $ev->{table})
	{
		diag("bad schema event: key $m->{key} value $m->{value}");
		$bad_schema++;
		next;
	}
	my $name = "$ev->{schema}.$ev->{table}";
	$last_shape{$name} = $ev;
	push @{ $events_of{$name} }, { pos => position($m), ev => $ev, snapshot => $m->{headers}{snapshot} };
}
is($bad_schema, 0, 'every schema event is keyed {"schema","table"} by its own names');

# the catalog's view of a table, in the schema event's form
sub catalog_shape
{
	my ($table) = @_;
	my $cols = $node->safe_psql('postgres', qq{
		SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod) || ':' || atttypid || ':' || CASE WHEN attnotnull THEN 't' ELSE 'f' END,
		                  ',' ORDER BY attnum)
		  FROM pg_attribute WHERE attrelid = 'public.$table'::regclass AND attnum > 0 AND NOT attisdropped});
	my $key = $node->safe_psql('postgres', qq{
		SELECT coalesce((SELECT string_agg(a.attname, ',' ORDER BY k.n)
		   FROM pg_index i CROSS JOIN unnest(i.indkey) WITH ORDINALITY k(attnum, n)
		   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		  WHERE i.indrelid = c.oid
		    AND CASE WHEN c.relreplident = 'i' THEN i.indisreplident ELSE i.indisprimary END),
		  '(none)')
		  FROM pg_class c WHERE c.oid = 'public.$table'::regclass});
	my $ident = $node->safe_psql('postgres', qq{
		SELECT CASE relreplident WHEN 'd' THEN 'default' WHEN 'f' THEN 'full' WHEN 'i' THEN 'index'
		       ELSE 'nothing' END FROM pg_class WHERE oid = 'public.$table'::regclass});
	return "columns $cols; key $key; replica identity $ident";
}

sub event_shape
{
	my ($ev) = @_;
	return undef unless $ev;
	my $cols = join(',', map { "$_->{name}:$_->{type}:$_->{type_oid}:" . ($_->{not_null} ? 't' : 'f') } @{ $ev->{columns} });
	my $key = $ev->{key} ? join(',', @{ $ev->{key} }) : '(none)';
	return "columns $cols; key $key; replica identity $ev->{replica_identity}";
}

for my $t ('stable_t', 'evolved')
{
	is(event_shape($last_shape{"public.$t"}), catalog_shape($t), "$t: the shape rebuilt from the schema events is the catalog's");
}
ok(($events_of{'public.stable_t'} // [])->[0] && $events_of{'public.stable_t'}[0]{snapshot} eq 'true'
	  && @{ $events_of{'public.stable_t'} } == 1,
	'stable_t never changed: one schema event, from the snapshot');
ok($last_shape{'public.evolve'} && $last_shape{'public.evolve'}{relid} == $last_shape{'public.evolved'}{relid},
	'the renamed table: the old name keeps its last shape, the new name has the same relid');

# each shape once per stream: no two consecutive equal schema events of a table
{
	my $repeats = 0;
	for my $name (sort keys %events_of)
	{
		my @e = sort { cmp_pos($a->{pos}, $b->{pos}) } @{ $events_of{$name} };
		for my $i (1 .. $#e)
		{
			# a new decoding session starts with the shape the snapshot has
			next if $e[$i]{snapshot} eq 'true' || $e[ $i - 1 ]{snapshot} eq 'true';
			if (event_shape($e[$i]{ev}) eq event_shape($e[ $i - 1 ]{ev}))
			{
				$repeats++;
				diag("$name: the same shape twice in a row: " . event_shape($e[$i]{ev}));
			}
		}
	}
	is($repeats, 0, 'a schema event only when the shape changed');
	# evolve: the snapshot's, then one before the first change after each step with a
	# change (8), and the mid-transaction ADD COLUMN's; evolved: one
	is(scalar(@{ $events_of{'public.evolve'} // [] }), 10, 'evolve: a schema event per shape change')
	  or diag(join("\n", map { event_shape($_->{ev}) } @{ $events_of{'public.evolve'} // [] }));
}

# every row event has the columns and key of the shape in force at its position
# quiet: the online chunks' shape, with the new column, once, before the chunks' rows
{
	# after the initial snapshot's consistent point (stable_t's only schema event)
	my $cp = $events_of{'public.stable_t'}[0]{pos}[0];
	my @online = grep { $_->{snapshot} eq 'true' && $_->{pos}[0] > $cp } @{ $events_of{'public.quiet'} // [] };
	is(scalar(@online), 1, 'quiet: one schema event from the online snapshot (3 chunks, one shape)')
	  or diag(explain($events_of{'public.quiet'}));
	my @cols = map { $_->{name} } @{ $online[0]{ev}{columns} // [] };
	is("@cols", 'id v extra', 'quiet: ... it has the added column');
	my @r = grep { ($_->{headers}{op} // '') eq 'r' && position($_)->[0] > $cp } consume($k, "$prefix.public.quiet");
	is(scalar(@r), 30, 'quiet: 30 online "r" rows');
	is(scalar(grep { cmp_pos(position($_), $online[0]{pos} // [ 0, 0, 0 ]) < 0 } @r), 0,
		'quiet: ... none before the online schema event');
	is(scalar(grep { ($_->{headers}{table} // '') eq 'public.quiet' } @schemas), 2,
		'quiet: the snapshot\'s shape and the online one, no other');
}

for my $t ('stable_t', 'evolve', 'evolved', 'quiet', 'quiet2')
{
	my @shapes = sort { cmp_pos($a->{pos}, $b->{pos}) } @{ $events_of{"public.$t"} // [] };
	my @rows = consume($k, "$prefix.public.$t");
	my ($checked, $bad) = (0, 0);
	for my $m (@rows)
	{
		next unless defined $m->{value};
		my $ev = decode_json($m->{value});
		next unless $ev->{op} =~ /^[rcu]$/;
		my $pos = position($m);
		my ($shape) = reverse grep { cmp_pos($_->{pos}, $pos) < 0 } @shapes;
		my $want_cols = $shape ? join(',', map { $_->{name} } @{ $shape->{ev}{columns} }) : '(no shape)';
		my $want_key = $shape && $shape->{ev}{key} ? join(',', @{ $shape->{ev}{key} }) : '(none)';
		# JSON::PP keeps no key order: compare sets, in the shape's order
		my %after = %{ $ev->{after} };
		my $got_cols = $shape ? join(',', grep { exists $after{$_} } map { $_->{name} } @{ $shape->{ev}{columns} }) : '';
		$got_cols = '(extra: ' . join(',', sort keys %after) . ')' if keys(%after) != @{ $shape ? $shape->{ev}{columns} : [] };
		my $got_key = $ev->{key} ? join(',', grep { exists $ev->{key}{$_} } @{ $shape->{ev}{key} // [] }) : '(none)';
		$got_key = '(other key: ' . join(',', sort keys %{ $ev->{key} }) . ')'
		  if $ev->{key} && keys(%{ $ev->{key} }) != @{ $shape->{ev}{key} // [] };
		$checked++;
		if ($got_cols ne $want_cols || $got_key ne $want_key)
		{
			$bad++;
			diag("$t: $m->{headers}{event_id} $ev->{op}: columns $got_cols, key $got_key; shape in force: "
				  . "columns $want_cols, key $want_key") if $bad <= 5;
		}
	}
	ok($checked > 0, "$t: row events read ($checked)");
	is($bad, 0, "$t: every row event has the columns and key of the schema event before it");
}

# ---- <prefix>.ddl: the DDL statements in commit order ------------------------------------------
{
	my @ddl = consume($k, "$prefix.ddl");
	my @statements;
	my $bad = 0;
	for my $m (@ddl)
	{
		my $ev = decode_json($m->{value});
		my $c = eval { decode_json($ev->{content}) };
		if (!$c || $ev->{prefix} ne 'cdc_relay.ddl' || ($m->{headers}{op} // '') ne 'm'
			|| ($m->{key} // '') ne ($ev->{xid} // '-'))
		{
			$bad++;
			diag("unexpected ddl message: key " . ($m->{key} // 'null') . " value $m->{value}");
			next;
		}
		push @statements, $c->{statement};
		my $tag = $c->{statement} =~ /^\s*CREATE (UNIQUE )?INDEX/ ? 'CREATE INDEX' : 'ALTER TABLE';
		$bad++, diag("statement $c->{statement} with tag $c->{tag}") if $tag ne $c->{tag};
	}
	is($bad, 0, 'ddl messages: the plugin\'s "m" events of prefix cdc_relay.ddl, keyed by xid, with the command tag');
	s/\s+/ /g for @statements;
	s/^\s+|\s+$//g for @statements;
	s/;$// for @statements;
	is_deeply(\@statements, \@ddl_run, 'the ddl topic holds each DDL statement, in commit order, none rolled back')
	  or diag(explain(\@statements));
	my @msgs = consume($k, "$prefix.messages");
	is(scalar(grep { ($_->{key} // '') eq 'cdc_relay.ddl' } @msgs), 0, 'no DDL message in the messages topic');
}

is($relay->stop, 0, 'relay exits 0 on SIGTERM');
note(sprintf('done in %.1f s', time() - $t_start));
done_testing();
