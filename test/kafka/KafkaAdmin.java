/*
 * test/kafka/KafkaAdmin.java: the few topic operations the tests need that kcat
 * cannot do, through Kafka's own Admin client (kafka-clients, in the broker jars).
 * A single-file program: `java` compiles it in memory (source-file mode, JEP 330),
 * nothing is built or stored.  Run it through cluster.sh, which supplies the class
 * path and the logging configuration:
 *
 *   cluster.sh admin BOOTSTRAP create-topic NAME PARTITIONS RF [name=value ...]
 *       creates the topic with those topic configs, then waits (30 s at most) until
 *       every partition has a leader (and the broker asked knows the topic); an
 *       existing topic is an error.
 *   cluster.sh admin BOOTSTRAP configs NAME
 *       prints the topic's configs, "name=value" per line, sorted, then exits.
 *
 * Exit status 0 on success; 1 with one line on stderr on any error; 2 on bad usage.
 */
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;

public class KafkaAdmin
{
	static final long TIMEOUT_MS = 30000;

	public static void main(String[] args)
	{
		if (args.length < 3)
			usage();
		Properties p = new Properties();
		p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
		p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) TIMEOUT_MS);
		p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000);
		int rc;
		try (Admin admin = Admin.create(p))
		{
			switch (args[1])
			{
				case "create-topic":
					rc = createTopic(admin, args);
					break;
				case "configs":
					rc = configs(admin, args[2]);
					break;
				default:
					usage();
					rc = 2;
			}
		}
		catch (ExecutionException e)
		{
			System.err.println("KafkaAdmin " + args[1] + " " + args[2] + ": " + e.getCause());
			rc = 1;
		}
		catch (Exception e)
		{
			System.err.println("KafkaAdmin " + args[1] + " " + args[2] + ": " + e);
			rc = 1;
		}
		System.exit(rc);
	}

	static void usage()
	{
		System.err.println("usage: KafkaAdmin BOOTSTRAP create-topic NAME PARTITIONS RF [name=value ...]\n"
						   + "       KafkaAdmin BOOTSTRAP configs NAME");
		System.exit(2);
	}

	static int createTopic(Admin admin, String[] args) throws Exception
	{
		if (args.length < 5)
			usage();
		String name = args[2];
		Map<String, String> conf = new HashMap<>();
		for (int i = 5; i < args.length; i++)
		{
			int eq = args[i].indexOf('=');
			if (eq <= 0)
				usage();
			conf.put(args[i].substring(0, eq), args[i].substring(eq + 1));
		}
		NewTopic t = new NewTopic(name, Integer.parseInt(args[3]), Short.parseShort(args[4])).configs(conf);
		admin.createTopics(List.of(t)).all().get(TIMEOUT_MS, TimeUnit.MILLISECONDS);

		long deadline = System.currentTimeMillis() + TIMEOUT_MS;
		while (true)
		{
			List<Integer> leaderless = new ArrayList<>();
			try
			{
				TopicDescription d = admin.describeTopics(Set.of(name)).allTopicNames()
					.get(TIMEOUT_MS, TimeUnit.MILLISECONDS).get(name);
				for (TopicPartitionInfo pi : d.partitions())
					if (pi.leader() == null || pi.leader().isEmpty())
						leaderless.add(pi.partition());
				if (leaderless.isEmpty())
					return 0;
			}
			catch (ExecutionException e)
			{
				/* the broker asked has not seen the new topic yet (3 nodes) */
				if (!(e.getCause() instanceof UnknownTopicOrPartitionException))
					throw e;
				leaderless.add(-1);
			}
			if (System.currentTimeMillis() > deadline)
			{
				System.err.println("KafkaAdmin create-topic " + name + ": partitions without a leader after "
								   + TIMEOUT_MS / 1000 + " s: " + leaderless);
				return 1;
			}
			Thread.sleep(100);
		}
	}

	static int configs(Admin admin, String name) throws Exception
	{
		ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, name);
		Config c = admin.describeConfigs(List.of(r)).all().get(TIMEOUT_MS, TimeUnit.MILLISECONDS).get(r);
		Map<String, String> sorted = new TreeMap<>();
		for (ConfigEntry e : c.entries())
			sorted.put(e.name(), e.value() == null ? "" : e.value());
		for (Map.Entry<String, String> e : sorted.entrySet())
			System.out.println(e.getKey() + "=" + e.getValue());
		return 0;
	}
}
