package io.trellis2lora.core.testing;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpsConfigurator;
import com.sun.net.httpserver.HttpsServer;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

/**
 * A real HTTPS server on loopback with a throw-away self-signed certificate (made with keytool), serving files
 * with or without Range support, and redirects. {@link #clientContext()} trusts it.
 */
public final class TestHttpsServer implements AutoCloseable {
    private static final Pattern RANGE = Pattern.compile("bytes=(\\d*)-(\\d*)");
    private static SSLContext serverContext;
    private static SSLContext clientContext;

    private final HttpsServer server;
    private final Map<String, byte[]> ranged = new ConcurrentHashMap<>();
    private final Map<String, byte[]> whole = new ConcurrentHashMap<>();
    private final Map<String, String> redirects = new ConcurrentHashMap<>();
    public final AtomicLong requests = new AtomicLong();
    public final AtomicLong bytesSent = new AtomicLong();

    public TestHttpsServer() throws Exception {
        contexts();
        server = HttpsServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.setHttpsConfigurator(new HttpsConfigurator(serverContext));
        server.createContext("/", this::serve);
        server.start();
    }

    /** Served with Range support (206 answers). */
    public String serveRanged(String path, byte[] data) {
        ranged.put(path, data);
        return url(path);
    }

    /** Served whole (200) whatever Range header comes: a server that ignores ranges. */
    public String serveWhole(String path, byte[] data) {
        whole.put(path, data);
        return url(path);
    }

    public String redirect(String path, String location) {
        redirects.put(path, location);
        return url(path);
    }

    public String url(String path) {
        return "https://127.0.0.1:" + server.getAddress().getPort() + path;
    }

    private void serve(HttpExchange ex) throws IOException {
        requests.incrementAndGet();
        try (ex) {
            String path = ex.getRequestURI().getPath();
            if (redirects.containsKey(path)) {
                ex.getResponseHeaders().add("Location", redirects.get(path));
                ex.sendResponseHeaders(302, -1);
                return;
            }
            byte[] data = whole.get(path);
            if (data != null) {
                send(ex, 200, data, 0, data.length);
                return;
            }
            data = ranged.get(path);
            if (data == null) {
                ex.sendResponseHeaders(404, -1);
                return;
            }
            String range = ex.getRequestHeaders().getFirst("Range");
            Matcher m = range == null ? null : RANGE.matcher(range);
            if (m == null || !m.matches()) {
                send(ex, 200, data, 0, data.length);
                return;
            }
            long start;
            long end;
            if (m.group(1).isEmpty()) {
                long n = Long.parseLong(m.group(2));
                start = Math.max(0, data.length - n);
                end = data.length - 1;
            } else {
                start = Long.parseLong(m.group(1));
                end = m.group(2).isEmpty() ? data.length - 1 : Math.min(Long.parseLong(m.group(2)), data.length - 1);
            }
            if (start >= data.length || end < start) {
                ex.getResponseHeaders().add("Content-Range", "bytes */" + data.length);
                ex.sendResponseHeaders(416, -1);
                return;
            }
            ex.getResponseHeaders().add("Content-Range", "bytes " + start + "-" + end + "/" + data.length);
            send(ex, 206, data, (int) start, (int) (end - start + 1));
        }
    }

    private void send(HttpExchange ex, int status, byte[] data, int from, int len) throws IOException {
        ex.sendResponseHeaders(status, len == 0 ? -1 : len);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(data, from, len);
        }
        bytesSent.addAndGet(len);
    }

    /** Trusts the test server's certificate only. */
    public static synchronized SSLContext clientContext() throws Exception {
        contexts();
        return clientContext;
    }

    private static synchronized void contexts() throws Exception {
        if (serverContext != null) {
            return;
        }
        Path dir = Files.createTempDirectory("trellis2-tls-");
        Path ks = dir.resolve("server.p12");
        char[] pass = "changeit".toCharArray();
        Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "keytool").toString(),
                "-genkeypair", "-alias", "test", "-keyalg", "EC", "-groupname", "secp256r1",
                "-dname", "CN=localhost", "-ext", "san=ip:127.0.0.1,dns:localhost", "-validity", "2",
                "-storetype", "PKCS12", "-keystore", ks.toString(), "-storepass", "changeit", "-keypass", "changeit")
                .redirectErrorStream(true).start();
        String log = new String(p.getInputStream().readAllBytes());
        if (p.waitFor() != 0) {
            throw new IllegalStateException("keytool failed: " + log);
        }
        KeyStore store = KeyStore.getInstance("PKCS12");
        try (var in = new FileInputStream(ks.toFile())) {
            store.load(in, pass);
        }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(store, pass);
        SSLContext server = SSLContext.getInstance("TLS");
        server.init(kmf.getKeyManagers(), null, null);
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        trust.setCertificateEntry("test", store.getCertificate("test"));
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        SSLContext client = SSLContext.getInstance("TLS");
        client.init(null, tmf.getTrustManagers(), null);
        serverContext = server;
        clientContext = client;
    }

    @Override
    public void close() {
        server.stop(0);
    }
}
