package io.trellis2lora.orchestration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.net.httpserver.HttpServer;
import io.trellis2lora.core.net.AddressPolicy;
import io.trellis2lora.core.net.SafeHttp;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.http.conn.DnsResolver;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The webhook goes to the address its host was vetted at: the name is looked up once, and the connection is made to
 * that answer (names here exist only in the test's name service, so any second lookup elsewhere would fail).
 */
class WebhookSenderTest {
    private HttpServer server;
    private final List<String> received = new CopyOnWriteArrayList<>();
    private final Map<String, AtomicInteger> lookups = new ConcurrentHashMap<>();

    @BeforeEach
    void start() throws Exception {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/hook", exchange -> {
            received.add(new String(exchange.getRequestBody().readAllBytes(), StandardCharsets.UTF_8));
            exchange.sendResponseHeaders(204, -1);
            exchange.close();
        });
        server.start();
    }

    @AfterEach
    void stop() {
        server.stop(0);
    }

    /** hooks.test is loopback (allowed in tests), internal.test a private address; other names do not resolve. */
    private WebhookSender sender() {
        DnsResolver dns = host -> {
            lookups.computeIfAbsent(host, h -> new AtomicInteger()).incrementAndGet();
            return switch (host) {
                case "hooks.test" -> new InetAddress[] {InetAddress.getByName("127.0.0.1")};
                case "internal.test" -> new InetAddress[] {InetAddress.getByName("10.1.2.3")};
                default -> {
                    if (!host.matches("[0-9.]+")) {
                        throw new UnknownHostException(host);
                    }
                    yield InetAddress.getAllByName(host);   // a literal: no lookup
                }
            };
        };
        return new WebhookSender(new SafeHttp(new AddressPolicy(true, false), null, "webhook",
                Duration.ofSeconds(5), dns), null);
    }

    private static String message(String url) {
        return "{\"url\": \"" + url + "\", \"body\": {\"request_id\": \"r1\", \"status\": \"OK\"}}";
    }

    @Test
    void deliveryConnectsToTheVettedAddressAfterOneLookup() {
        int port = server.getAddress().getPort();
        WebhookSender.Delivery d = sender().deliver(message("http://hooks.test:" + port + "/hook"));
        assertTrue(d.delivered(), d.detail());
        assertEquals(List.of("{\"request_id\":\"r1\",\"status\":\"OK\"}"), received);
        assertEquals(1, lookups.get("hooks.test").get());
    }

    @Test
    void aHostResolvingToAPrivateAddressIsRefusedWithoutAConnection() {
        WebhookSender.Delivery d = sender().deliver(message("https://internal.test/hook"));
        assertFalse(d.delivered());
        assertEquals("webhook host 'internal.test' resolves to 10.1.2.3: it is a private or link-local address, "
                + "which the service does not fetch", d.detail());
        assertEquals(1, lookups.get("internal.test").get());
        assertEquals(List.of(), received);
        WebhookSender.Delivery metadata = sender().deliver(message("https://169.254.169.254/latest/"));
        assertFalse(metadata.delivered());
        assertTrue(metadata.detail().contains("metadata"), metadata.detail());
    }
}
