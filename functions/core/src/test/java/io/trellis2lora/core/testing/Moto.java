package io.trellis2lora.core.testing;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.UUID;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.http.urlconnection.UrlConnectionHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.S3Configuration;
import software.amazon.awssdk.services.s3.presigner.S3Presigner;
import software.amazon.awssdk.services.sfn.SfnClient;

/**
 * A real local AWS emulator for the tests: moto's server from the project's Python environment, started once per
 * JVM (the first test class that uses {@code @ExtendWith(Moto.class)} starts it; a shutdown hook stops it), with
 * Step Functions set to really run state machines. Clients point at it with dummy credentials in us-east-1.
 */
public final class Moto implements BeforeAllCallback {
    public static final Region REGION = Region.US_EAST_1;
    public static final String ROLE = "arn:aws:iam::123456789012:role/trellis2-test";
    private static URI endpoint;
    private static Process process;

    @Override
    public void beforeAll(ExtensionContext context) throws Exception {
        endpoint();
    }

    public static synchronized URI endpoint() throws IOException, InterruptedException {
        if (endpoint != null) {
            return endpoint;
        }
        Path python = venv().resolve("bin/python");
        if (!Files.isExecutable(python)) {
            throw new IllegalStateException("no Python at " + python + ": run bin/setup (the tests start moto from "
                    + "the project's Python environment), or pass -Dtrellis2.venv=DIR");
        }
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        Path log = Files.createTempFile("moto-", ".log");
        process = new ProcessBuilder(python.toString(), "-m", "moto.server", "-H", "127.0.0.1", "-p",
                String.valueOf(port)).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        Process p = process;
        Runtime.getRuntime().addShutdownHook(new Thread(p::destroy));
        URI uri = URI.create("http://127.0.0.1:" + port);
        HttpClient http = HttpClient.newHttpClient();
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (true) {
            if (!p.isAlive()) {
                throw new IllegalStateException("moto server exited: " + Files.readString(log));
            }
            try {
                // Executions really run (Pass/Wait/Fail states), so status tests see real histories.
                HttpResponse<String> r = http.send(HttpRequest.newBuilder(uri.resolve("/moto-api/config"))
                        .POST(HttpRequest.BodyPublishers.ofString(
                                "{\"stepfunctions\": {\"execute_state_machine\": true}}"))
                        .timeout(Duration.ofSeconds(5)).build(), HttpResponse.BodyHandlers.ofString());
                if (r.statusCode() / 100 == 2) {
                    break;
                }
            } catch (IOException e) {
                // not listening yet
            }
            if (System.nanoTime() > deadline) {
                p.destroy();
                throw new IllegalStateException("moto server did not start within 60 s: " + Files.readString(log));
            }
            Thread.sleep(200);
        }
        endpoint = uri;
        return uri;
    }

    static Path venv() throws IOException, InterruptedException {
        String v = System.getProperty("trellis2.venv");
        if (v == null || v.isBlank()) {
            v = System.getenv("TRELLIS2_VENV");
        }
        if (v == null || v.isBlank()) {
            Process p = new ProcessBuilder(TestPaths.repo().resolve("bin/venv-path").toString()).start();
            v = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
            p.waitFor();
        }
        return Path.of(v);
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
