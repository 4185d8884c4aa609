package io.trellis2lora.core.testing;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.UUID;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.http.urlconnection.UrlConnectionHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.batch.BatchClient;
import software.amazon.awssdk.services.cloudwatchlogs.CloudWatchLogsClient;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.S3Configuration;
import software.amazon.awssdk.services.s3.presigner.S3Presigner;
import software.amazon.awssdk.services.sfn.SfnClient;

/**
 * A real local AWS emulator for the tests: moto's server from the project's Python environment (see
 * {@link #endpoint()} for its lifetime), with Step Functions set to really run state machines. Clients point at it
 * with dummy credentials in us-east-1, S3 path-style.
 */
public final class Moto implements BeforeAllCallback {
    public static final Region REGION = Region.US_EAST_1;
    public static final String ROLE = "arn:aws:iam::123456789012:role/trellis2-test";
    private static URI endpoint;

    @Override
    public void beforeAll(ExtensionContext context) throws Exception {
        endpoint();
    }

    /**
     * The emulator's address. One server serves a whole Maven build: the first test JVM starts it, records its port
     * under target/moto/ keyed by the Maven process, and tells it to exit once that process has gone; the test
     * JVMs of later modules find it there. Every test makes its own bucket and state machine, so sharing is safe.
     */
    public static synchronized URI endpoint() throws IOException, InterruptedException {
        if (endpoint != null) {
            return endpoint;
        }
        long owner = owner();
        Path dir = Files.createDirectories(TestPaths.repo().resolve("target/moto"));
        Path record = dir.resolve(owner + ".port");
        try (FileChannel lock = FileChannel.open(dir.resolve("lock"), StandardOpenOption.CREATE,
                StandardOpenOption.WRITE); FileLock ignored = lock.lock()) {
            if (Files.isRegularFile(record)) {
                URI uri = URI.create("http://127.0.0.1:" + Files.readString(record).trim());
                if (configure(uri)) {
                    endpoint = uri;
                    return uri;
                }
            }
            URI uri = start(owner, dir);
            Files.writeString(record, String.valueOf(uri.getPort()));
            endpoint = uri;
            return uri;
        }
    }

    /** The Maven process above this test JVM (surefire may fork through a shell), else the direct parent. */
    static long owner() {
        var parent = ProcessHandle.current().parent();
        long fallback = parent.map(ProcessHandle::pid).orElse(ProcessHandle.current().pid());
        for (var p = parent; p.isPresent(); p = p.get().parent()) {
            if (p.get().info().commandLine().orElse("").contains("classworlds")) {
                return p.get().pid();
            }
        }
        return fallback;
    }

    /** moto's threaded server plus a watchdog that stops it when {@code owner} (the Maven process) exits. */
    private static final String SERVER = String.join("\n",
            "import os, sys, time",
            "from moto.server import ThreadedMotoServer",
            "server = ThreadedMotoServer(ip_address='127.0.0.1', port=int(sys.argv[1]), verbose=False)",
            "server.start()",
            "owner = int(sys.argv[2])",
            "def alive(pid):",
            "    try:",
            "        os.kill(pid, 0)",
            "        return True",
            "    except ProcessLookupError:",
            "        return False",
            "    except PermissionError:",
            "        return True",
            "while alive(owner):",
            "    time.sleep(1)",
            "server.stop()");

    private static URI start(long owner, Path dir) throws IOException, InterruptedException {
        Path python = TestPaths.venv().resolve("bin/python");
        if (!Files.isExecutable(python)) {
            throw new IllegalStateException("no Python at " + python + ": run bin/setup (the tests start moto from "
                    + "the project's Python environment), or pass -Dtrellis2.venv=DIR");
        }
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        Path log = dir.resolve(owner + ".log");
        Process p = new ProcessBuilder(python.toString(), "-c", SERVER, String.valueOf(port), String.valueOf(owner))
                .redirectErrorStream(true).redirectOutput(log.toFile()).start();
        URI uri = URI.create("http://127.0.0.1:" + port);
        long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
        while (!configure(uri)) {
            if (!p.isAlive()) {
                throw new IllegalStateException("moto server exited: " + Files.readString(log));
            }
            if (System.nanoTime() > deadline) {
                p.destroy();
                throw new IllegalStateException("moto server did not start within 90 s: " + Files.readString(log));
            }
            Thread.sleep(200);
        }
        return uri;
    }

    /** Makes Step Functions executions really run (Pass/Wait/Fail states); false while nothing answers. */
    private static boolean configure(URI uri) throws InterruptedException {
        try {
            HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                    uri.resolve("/moto-api/config")).POST(HttpRequest.BodyPublishers.ofString(
                    "{\"stepfunctions\": {\"execute_state_machine\": true}}"))
                    .timeout(Duration.ofSeconds(5)).build(), HttpResponse.BodyHandlers.ofString());
            return r.statusCode() / 100 == 2;
        } catch (IOException e) {
            return false;
        }
    }

    private static <B extends software.amazon.awssdk.awscore.client.builder.AwsClientBuilder<B, ?>> B configure(
            B builder) {
        try {
            return builder.endpointOverride(endpoint()).region(REGION).credentialsProvider(
                    StaticCredentialsProvider.create(AwsBasicCredentials.create("testing", "testing")));
        } catch (IOException | InterruptedException e) {
            throw new IllegalStateException(e);
        }
    }

    public static S3Client s3() {
        return configure(S3Client.builder()).httpClientBuilder(UrlConnectionHttpClient.builder())
                .forcePathStyle(true).build();
    }

    public static SfnClient sfn() {
        return configure(SfnClient.builder()).httpClientBuilder(UrlConnectionHttpClient.builder()).build();
    }

    public static BatchClient batch() {
        return configure(BatchClient.builder()).httpClientBuilder(UrlConnectionHttpClient.builder()).build();
    }

    public static CloudWatchLogsClient logs() {
        return configure(CloudWatchLogsClient.builder()).httpClientBuilder(UrlConnectionHttpClient.builder()).build();
    }

    /**
     * A Batch job queue on an unmanaged compute environment (moto wants its service role to exist in IAM; the IAM
     * call goes as a plain query request, as the project has no IAM client), and a job definition; answers the
     * queue's name and the definition's name.
     */
    public static String[] newJobQueue(BatchClient batch) throws IOException, InterruptedException {
        String id = UUID.randomUUID().toString().substring(0, 12);
        HttpResponse<String> role = HttpClient.newHttpClient().send(HttpRequest.newBuilder(endpoint())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, "
                        + "SignedHeaders=host, Signature=0")
                .POST(HttpRequest.BodyPublishers.ofString("Action=CreateRole&Version=2010-05-08&RoleName=batch-" + id
                        + "&AssumeRolePolicyDocument=%7B%7D")).build(), HttpResponse.BodyHandlers.ofString());
        if (role.statusCode() != 200) {
            throw new IllegalStateException("moto CreateRole: " + role.body());
        }
        String ce = batch.createComputeEnvironment(b -> b.computeEnvironmentName("ce-" + id).type("UNMANAGED")
                .state("ENABLED").serviceRole("arn:aws:iam::123456789012:role/batch-" + id)).computeEnvironmentArn();
        batch.createJobQueue(b -> b.jobQueueName("q-" + id).state("ENABLED").priority(1)
                .computeEnvironmentOrder(o -> o.order(1).computeEnvironment(ce)));
        batch.registerJobDefinition(b -> b.jobDefinitionName("jd-" + id).type("container")
                .containerProperties(c -> c.image("busybox").vcpus(1).memory(128).command("true")));
        return new String[] {"q-" + id, "jd-" + id};
    }

    public static S3Presigner presigner() {
        try {
            return S3Presigner.builder().endpointOverride(endpoint()).region(REGION)
                    .serviceConfiguration(S3Configuration.builder().pathStyleAccessEnabled(true).build())
                    .credentialsProvider(StaticCredentialsProvider.create(
                            AwsBasicCredentials.create("testing", "testing"))).build();
        } catch (IOException | InterruptedException e) {
            throw new IllegalStateException(e);
        }
    }

    /** A fresh bucket per test class keeps tests independent on the one shared server. */
    public static String newBucket(S3Client s3) {
        String bucket = "t2-" + UUID.randomUUID().toString().substring(0, 18);
        s3.createBucket(b -> b.bucket(bucket));
        return bucket;
    }

    /** A state machine that really runs in moto: {@code definition} is ASL JSON. */
    public static String newStateMachine(SfnClient sfn, String definition) {
        String name = "sm-" + UUID.randomUUID().toString().substring(0, 12);
        return sfn.createStateMachine(b -> b.name(name).definition(definition).roleArn(ROLE)).stateMachineArn();
    }
}
