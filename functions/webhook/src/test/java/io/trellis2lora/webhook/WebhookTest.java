package io.trellis2lora.webhook;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.amazonaws.services.lambda.runtime.events.SQSEvent;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpServer;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.ApiRequest;
import io.trellis2lora.core.api.ApiResponse;
import io.trellis2lora.core.api.Services;
import io.trellis2lora.core.api.StoredRequest;
import io.trellis2lora.core.api.SubmitOperation;
import io.trellis2lora.core.model.Denoiser;
import io.trellis2lora.core.model.TrainingRequest;
import io.trellis2lora.core.net.AddressPolicy;
import io.trellis2lora.core.pricing.Pricing;
import io.trellis2lora.core.storage.DirectoryObjectStore;
import io.trellis2lora.core.storage.PresignedLinks;
import io.trellis2lora.core.storage.S3ObjectStore;
import io.trellis2lora.core.storage.StorageLayout;
import io.trellis2lora.core.testing.Moto;
import io.trellis2lora.core.testing.TestServices;
import io.trellis2lora.core.testing.TestZips;
import io.trellis2lora.core.testing.WorkerRecords;
import io.trellis2lora.core.zip.ZipInspection;
import io.trellis2lora.orchestration.Finalizer;
import io.trellis2lora.orchestration.Preparer;
import io.trellis2lora.orchestration.SqsWebhookQueue;
import io.trellis2lora.orchestration.WebhookSender;
import java.math.BigDecimal;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.http.urlconnection.UrlConnectionHttpClient;
import software.amazon.awssdk.services.sqs.SqsClient;
import software.amazon.awssdk.services.sqs.model.Message;
import software.amazon.awssdk.services.sqs.model.MessageSystemAttributeName;
import software.amazon.awssdk.services.sqs.model.QueueAttributeName;

/** Finalize queues the completion message on SQS (moto); the sender POSTs it, retries with backoff, then dead-letters. */
@ExtendWith(Moto.class)
class WebhookTest {
    private HttpServer server;
    private final List<String> received = new CopyOnWriteArrayList<>();
    private final AtomicInteger status = new AtomicInteger(200);
    private SqsClient sqs;

    @BeforeEach
    void start() throws Exception {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/hook", exchange -> {
            received.add(new String(exchange.getRequestBody().readAllBytes(), StandardCharsets.UTF_8));
            exchange.sendResponseHeaders(status.get(), -1);
            exchange.close();
        });
        server.start();
        sqs = SqsClient.builder().endpointOverride(Moto.endpoint()).region(Moto.REGION)
                .httpClientBuilder(UrlConnectionHttpClient.builder())
                .credentialsProvider(StaticCredentialsProvider.create(AwsBasicCredentials.create("testing", "testing")))
                .build();
    }

    @AfterEach
    void stop() {
        server.stop(0);
    }

    private String hookUrl() {
        return "http://127.0.0.1:" + server.getAddress().getPort() + "/hook";
    }

    /** A request whose texture stage succeeded and geometry stage failed, finalized with a webhook asked for. */
    private void finalizeRequest(Path dir, String queueUrl, String requestId) throws Exception {
        DirectoryObjectStore store = new DirectoryObjectStore(dir);
        TrainingRequest request = new TrainingRequest("/data/in.zip", List.of(Denoiser.GEOMETRY, Denoiser.TEXTURE),
                512, 32, new BigDecimal("0.0001"), 1000);
        StoredRequest stored = new StoredRequest(requestId, "2026-01-01T00:00:00Z", null, request, "/data/in.zip",
                new ZipInspection(ZipInspection.Kind.RAW, 20, 20, 1000, 2000, false, null),
                Pricing.estimate(request, 20, false));
        store.write(StorageLayout.requestJson(requestId), Json.pretty(stored).getBytes(), "application/json");
        store.write(Finalizer.webhookKey(requestId), Json.write(Map.of("url", hookUrl())).getBytes(), "application/json");
        store.write(StorageLayout.adapter(requestId, Denoiser.TEXTURE), new byte[1234], "application/octet-stream");
        store.write(StorageLayout.adapterReport(requestId, Denoiser.TEXTURE), WorkerRecords.bytes(Denoiser.TEXTURE,
                request, store.uri(StorageLayout.adapter(requestId, Denoiser.TEXTURE)), 1234), "application/json");
        store.write("datasets/k1/preprocessed.zip", new byte[99], "application/zip");
        ObjectNode event = Json.MAPPER.createObjectNode();
        event.put("action", "finalize");
        event.put("request_id", requestId);
        ObjectNode prepared = event.putObject("prepared");
        prepared.put("request_id", requestId);
        prepared.put("objects", 20);
        prepared.put("dataset_key", "k1");
        prepared.put("dataset_uri", store.uri("datasets/k1/preprocessed.zip"));
        prepared.put("needs_preprocess", true);
        event.set("stage_results", Json.MAPPER.readTree(
                "[{\"denoiser\": \"geometry\", \"error\": \"CUDA out of memory\"}, {\"denoiser\": \"texture\", \"job_id\": \"j\"}]"));
        event.putNull("failure");
        new Finalizer(store, new SqsWebhookQueue(sqs, queueUrl)).handle(event);
    }

    private List<Message> receive(String queueUrl) {
        return sqs.receiveMessage(b -> b.queueUrl(queueUrl).maxNumberOfMessages(10).waitTimeSeconds(1)
                .messageSystemAttributeNames(MessageSystemAttributeName.APPROXIMATE_RECEIVE_COUNT)).messages();
    }

    private static SQSEvent event(Message m) {
        SQSEvent.SQSMessage s = new SQSEvent.SQSMessage();
        s.setMessageId(m.messageId());
        s.setReceiptHandle(m.receiptHandle());
        s.setBody(m.body());
        s.setAttributes(Map.of("ApproximateReceiveCount",
                m.attributes().getOrDefault(MessageSystemAttributeName.APPROXIMATE_RECEIVE_COUNT, "1")));
        SQSEvent e = new SQSEvent();
        e.setRecords(List.of(s));
        return e;
    }

    @Test
    void completionIsPostedWithTheResultAsPayload(@TempDir Path dir) throws Exception {
        String queueUrl = sqs.createQueue(b -> b.queueName("hooks-" + System.nanoTime())).queueUrl();
        finalizeRequest(dir, queueUrl, "req-hook-1");
        List<Message> messages = receive(queueUrl);
        assertEquals(1, messages.size());

        WebhookHandler handler = new WebhookHandler(new WebhookSender(new AddressPolicy(true, false),
                Duration.ofSeconds(5), null), sqs, queueUrl, 30);
        assertTrue(handler.handleRequest(event(messages.get(0)), null).getBatchItemFailures().isEmpty());
        assertEquals(1, received.size());
        JsonNode body = Json.MAPPER.readTree(received.get(0));
        assertEquals("req-hook-1", body.get("request_id").asText());
        assertEquals("OK", body.get("status").asText());
        assertTrue(body.get("error").isNull());
        // The payload is the result: the texture adapter, the failed geometry stage, in request order.
        assertEquals("texture", body.at("/payload/adapters/0/denoiser").asText());
        assertEquals(1234, body.at("/payload/adapters/0/lora_file/file_size").asInt());
        assertEquals("geometry", body.at("/payload/failed/0/denoiser").asText());
        assertEquals("CUDA out of memory", body.at("/payload/failed/0/error").asText());
    }

    /**
     * The whole path as a user sees it: submit with ?fal_webhook=, Finalize on the requests bucket (moto), the sender
     * POSTs to the receiver, and every file in the payload is a presigned link that downloads the stored bytes.
     */
    @Test
    void falWebhookGivenOnSubmitReceivesDownloadableSignedLinks() throws Exception {
        Services services = TestServices.create(TestServices.RUNNING_MACHINE);
        String bucket = services.config().requestsBucket();
        byte[] zip = TestZips.forge(List.of(TestZips.Forged.file("a/chair.glb", "glTF"),
                TestZips.Forged.file("b/lamp.ply", "ply")), false);
        services.s3().putObject(b -> b.bucket(bucket).key("uploads/in.zip"), RequestBody.fromBytes(zip));
        ApiResponse submitted = new SubmitOperation(services).handle(new ApiRequest("POST", Map.of(), Map.of(),
                "{\"data_url\": \"s3://" + bucket + "/uploads/in.zip\", \"denoisers\": [\"texture\"]}", null, null,
                Map.of("fal_webhook", hookUrl())));
        assertEquals(202, submitted.status(), submitted.body());
        String requestId = Json.MAPPER.readTree(submitted.body()).get("request_id").asText();

        S3ObjectStore store = new S3ObjectStore(services.s3(), bucket);
        TrainingRequest request = Preparer.loadRequest(store, requestId).request();
        byte[] lora = "lora-bytes".getBytes(StandardCharsets.UTF_8);
        byte[] preview = "png-bytes".getBytes(StandardCharsets.UTF_8);
        byte[] dataset = "zip-bytes".getBytes(StandardCharsets.UTF_8);
        String adapter = StorageLayout.adapter(requestId, Denoiser.TEXTURE);
        String previewKey = adapter.substring(0, adapter.lastIndexOf('/') + 1) + "texture_preview.png";
        store.write(adapter, lora, "application/octet-stream");
        store.write(previewKey, preview, "image/png");
        store.write("datasets/k2/preprocessed.zip", dataset, "application/zip");
        ObjectNode record = WorkerRecords.of(Denoiser.TEXTURE, request, store.uri(adapter), lora.length);
        record.putObject("preview_file").put("url", store.uri(previewKey)).put("content_type", "image/png");
        store.write(StorageLayout.adapterReport(requestId, Denoiser.TEXTURE), Json.pretty(record).getBytes(),
                "application/json");
        ObjectNode event = Json.MAPPER.createObjectNode();
        event.put("action", "finalize");
        event.put("request_id", requestId);
        ObjectNode prepared = event.putObject("prepared");
        prepared.put("request_id", requestId);
        prepared.put("objects", 2);
        prepared.put("dataset_key", "k2");
        prepared.put("dataset_uri", store.uri("datasets/k2/preprocessed.zip"));
        prepared.put("needs_preprocess", false);
        event.set("stage_results", Json.MAPPER.readTree("[{\"denoiser\": \"texture\", \"job_id\": \"j\"}]"));
        event.putNull("failure");
        String queueUrl = sqs.createQueue(b -> b.queueName("hooks-" + System.nanoTime())).queueUrl();
        new Finalizer(store, new SqsWebhookQueue(sqs, queueUrl)).handle(event);

        List<Message> messages = receive(queueUrl);
        assertEquals(1, messages.size());
        WebhookHandler handler = new WebhookHandler(new WebhookSender(new AddressPolicy(true, false),
                Duration.ofSeconds(5), new PresignedLinks(Moto.presigner(), Duration.ofMinutes(5))), sqs, queueUrl, 30);
        assertTrue(handler.handleRequest(event(messages.get(0)), null).getBatchItemFailures().isEmpty());
        assertEquals(1, received.size());
        JsonNode body = Json.MAPPER.readTree(received.get(0));
        assertEquals(requestId, body.get("request_id").asText());
        assertEquals(requestId, body.get("gateway_request_id").asText());
        assertEquals("OK", body.get("status").asText());
        Map<String, byte[]> files = Map.of("/payload/adapters/0/lora_file/url", lora,
                "/payload/adapters/0/preview_file/url", preview, "/payload/preprocessed_data_file/url", dataset);
        HttpClient client = HttpClient.newHttpClient();
        for (var f : files.entrySet()) {
            String url = body.at(f.getKey()).asText();
            assertFalse(url.startsWith("s3://"), f.getKey() + ": " + url);
            assertTrue(url.contains("X-Amz-Signature="), f.getKey() + ": " + url);
            HttpResponse<byte[]> got = client.send(HttpRequest.newBuilder(URI.create(url)).build(),
                    HttpResponse.BodyHandlers.ofByteArray());
            assertEquals(200, got.statusCode(), url);
            assertEquals(new String(f.getValue(), StandardCharsets.UTF_8), new String(got.body(), StandardCharsets.UTF_8));
        }
        // What is stored stays s3:// (links expire; each hand-out signs afresh).
        assertTrue(store.read(StorageLayout.resultJson(requestId)).map(b -> new String(b, StandardCharsets.UTF_8))
                .orElseThrow().contains("\"s3://" + bucket + "/" + adapter + "\""));
    }

    @Test
    void failedDeliveriesBackOffAndEndInTheDeadLetterQueue(@TempDir Path dir) throws Exception {
        String dlq = sqs.createQueue(b -> b.queueName("hooks-dlq-" + System.nanoTime())).queueUrl();
        String dlqArn = sqs.getQueueAttributes(b -> b.queueUrl(dlq).attributeNames(QueueAttributeName.QUEUE_ARN))
                .attributes().get(QueueAttributeName.QUEUE_ARN);
        String queueUrl = sqs.createQueue(b -> b.queueName("hooks-" + System.nanoTime()).attributes(Map.of(
                QueueAttributeName.REDRIVE_POLICY, "{\"deadLetterTargetArn\":\"" + dlqArn + "\",\"maxReceiveCount\":\"2\"}"
        ))).queueUrl();
        finalizeRequest(dir, queueUrl, "req-hook-2");
        status.set(500);
        WebhookHandler handler = new WebhookHandler(new WebhookSender(new AddressPolicy(true, false),
                Duration.ofSeconds(5), null), sqs, queueUrl, 1);

        List<Message> first = receive(queueUrl);
        assertEquals(1, first.size());
        assertEquals(1, handler.handleRequest(event(first.get(0)), null).getBatchItemFailures().size());
        // Backed off: not visible again at once.
        assertTrue(receive(queueUrl).isEmpty());
        Thread.sleep(1500);
        List<Message> second = receive(queueUrl);
        assertEquals(1, second.size(), "retried after the backoff");
        assertEquals(1, handler.handleRequest(event(second.get(0)), null).getBatchItemFailures().size());
        assertEquals(2, received.size());
        Thread.sleep(2500);
        // Past maxReceiveCount SQS moves it to the dead-letter queue.
        assertTrue(receive(queueUrl).isEmpty());
        List<Message> dead = receive(dlq);
        assertEquals(1, dead.size());
        assertEquals("req-hook-2", Json.MAPPER.readTree(dead.get(0).body()).at("/body/request_id").asText());
    }

    @Test
    void privateAndPlainHttpTargetsAreRefused() {
        WebhookSender strict = new WebhookSender(AddressPolicy.PUBLIC_ONLY, Duration.ofSeconds(2), null);
        assertFalse(strict.deliver(Json.write(Map.of("url", "https://127.0.0.1:9/hook", "body", Map.of()))).delivered());
        assertFalse(strict.deliver(Json.write(Map.of("url", "http://example.com/hook", "body", Map.of()))).delivered());
        assertTrue(received.isEmpty());
        assertEquals(30, WebhookSender.backoffSeconds(30, 1));
        assertEquals(120, WebhookSender.backoffSeconds(30, 3));
        assertEquals(900, WebhookSender.backoffSeconds(30, 12));
    }
}
