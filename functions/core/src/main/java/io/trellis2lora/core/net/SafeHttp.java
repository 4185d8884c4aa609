package io.trellis2lora.core.net;

import io.trellis2lora.core.InputRefusedException;
import java.io.Closeable;
import java.io.IOException;
import java.net.InetAddress;
import java.net.URI;
import java.net.URISyntaxException;
import java.net.UnknownHostException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import javax.net.ssl.SSLContext;
import org.apache.http.HttpHeaders;
import org.apache.http.client.config.RequestConfig;
import org.apache.http.client.methods.CloseableHttpResponse;
import org.apache.http.client.methods.HttpGet;
import org.apache.http.client.methods.HttpPost;
import org.apache.http.client.methods.HttpUriRequest;
import org.apache.http.entity.ByteArrayEntity;
import org.apache.http.entity.ContentType;
import org.apache.http.conn.DnsResolver;
import org.apache.http.conn.ssl.SSLConnectionSocketFactory;
import org.apache.http.impl.client.CloseableHttpClient;
import org.apache.http.impl.client.HttpClients;
import org.apache.http.impl.conn.SystemDefaultDnsResolver;

/**
 * GETs user-given https URLs without letting them reach the service's own network: every host name is resolved
 * here, every address is vetted by the {@link AddressPolicy} before the connection is made to exactly those
 * addresses (so a DNS answer cannot change between the check and the connect), and redirects are followed by hand
 * so each hop is checked again. The webhook sender POSTs through it too ({@link #post}), so its connection also goes
 * to the address it vetted, resolved once.
 */
public final class SafeHttp implements Closeable {
    static final int MAX_REDIRECTS = 5;

    private final AddressPolicy policy;
    private final String subject;
    private final DnsResolver dns;
    private final CloseableHttpClient client;

    public SafeHttp(AddressPolicy policy) {
        this(policy, null);
    }

    /** @param sslContext trust settings (tests trust their self-signed server); null for the JVM default */
    public SafeHttp(AddressPolicy policy, SSLContext sslContext) {
        this(policy, sslContext, "data_url", Duration.ofSeconds(60), SystemDefaultDnsResolver.INSTANCE);
    }

    /**
     * @param subject what the URLs are, as messages name them ("data_url", "webhook")
     * @param timeout the socket timeout (connecting takes at most 10 s, or this when shorter)
     * @param dns     the name service asked, once per connection; the vetted answer is what is connected to
     */
    public SafeHttp(AddressPolicy policy, SSLContext sslContext, String subject, Duration timeout, DnsResolver dns) {
        this.policy = policy;
        this.subject = subject;
        this.dns = dns;
        DnsResolver resolver = host -> vet(host, dns.resolve(host));
        int socketMs = (int) Math.min(Integer.MAX_VALUE, timeout.toMillis());
        int connectMs = Math.min(10_000, socketMs);
        RequestConfig timeouts = RequestConfig.custom().setConnectTimeout(connectMs).setSocketTimeout(socketMs)
                .setConnectionRequestTimeout(connectMs).setRedirectsEnabled(false).build();
        var builder = HttpClients.custom().setDnsResolver(resolver).setDefaultRequestConfig(timeouts)
                .disableRedirectHandling().disableCookieManagement().disableAutomaticRetries()
                .disableContentCompression().setUserAgent("trellis2-lora/0.1");
        if (sslContext != null) {
            builder.setSSLSocketFactory(new SSLConnectionSocketFactory(sslContext));
        }
        this.client = builder.build();
    }

    private InetAddress[] vet(String host, InetAddress[] addresses) throws UnknownHostException {
        List<InetAddress> ok = new ArrayList<>();
        for (InetAddress a : addresses) {
            String why = policy.refusal(a);
            if (why != null) {
                // One bad answer refuses the host: a mixed answer is the classic rebinding setup.
                throw new RefusedAddressException(subject + " host '" + host + "' resolves to "
                        + a.getHostAddress() + ": " + why + ", which the service does not fetch");
            }
            ok.add(a);
        }
        return ok.toArray(new InetAddress[0]);
    }

    /**
     * GETs {@code url}, following up to five redirects (https only, each one vetted). The caller closes the
     * response.
     */
    public CloseableHttpResponse get(String url, String range) throws IOException {
        URI uri = checkUrl(url, false);
        for (int hop = 0; ; hop++) {
            HttpGet get = new HttpGet(uri);
            if (range != null) {
                get.setHeader(HttpHeaders.RANGE, range);
            }
            get.setHeader(HttpHeaders.ACCEPT_ENCODING, "identity");
            CloseableHttpResponse resp = execute(get, uri);
            int status = resp.getStatusLine().getStatusCode();
            if (status >= 300 && status < 400 && resp.getFirstHeader(HttpHeaders.LOCATION) != null) {
                String location = resp.getFirstHeader(HttpHeaders.LOCATION).getValue();
                resp.close();
                if (hop + 1 > MAX_REDIRECTS) {
                    throw new InputRefusedException(subject + " redirects more than " + MAX_REDIRECTS + " times");
                }
                try {
                    uri = checkUrl(uri.resolve(new URI(location)).toString(), false);
                } catch (URISyntaxException e) {
                    throw new InputRefusedException(subject + " redirects to an invalid URL");
                }
                continue;
            }
            return resp;
        }
    }

    /**
     * POSTs {@code body} to {@code url} (https; plain http only where the policy lets loopback through, for tests)
     * and answers the status code. Redirects are not followed: a 3xx is an answer like any other.
     */
    public int post(String url, String contentType, byte[] body) throws IOException {
        URI uri = checkUrl(url, policy.allowLoopback());
        HttpPost post = new HttpPost(uri);
        post.setEntity(new ByteArrayEntity(body, ContentType.parse(contentType)));
        try (CloseableHttpResponse resp = execute(post, uri)) {
            return resp.getStatusLine().getStatusCode();
        }
    }

    /**
     * Vets a URL that will be POSTed to later (a webhook given on submit), so that a bad one is refused at once:
     * the scheme as {@link #post} takes it, and every address its host resolves to now. Delivery vets it again.
     */
    public void checkTarget(String url) {
        URI uri = checkUrl(url, policy.allowLoopback());
        try {
            vet(uri.getHost(), dns.resolve(uri.getHost()));
        } catch (RefusedAddressException e) {
            throw new InputRefusedException(e.getMessage());
        } catch (UnknownHostException e) {
            throw new InputRefusedException(subject + " host '" + uri.getHost() + "' does not resolve");
        }
    }

    private CloseableHttpResponse execute(HttpUriRequest request, URI uri) throws IOException {
        try {
            return client.execute(request);
        } catch (RefusedAddressException e) {
            throw new InputRefusedException(e.getMessage());
        } catch (UnknownHostException e) {
            throw new InputRefusedException(subject + " host '" + uri.getHost() + "' does not resolve");
        } catch (javax.net.ssl.SSLException e) {
            throw new InputRefusedException(subject + " " + redact(uri) + ": TLS failed (" + e.getMessage() + ")");
        } catch (java.net.ConnectException | org.apache.http.conn.ConnectTimeoutException e) {
            throw new InputRefusedException(subject + " " + redact(uri) + " cannot be reached");
        }
    }

    private URI checkUrl(String url, boolean allowHttp) {
        URI uri;
        try {
            uri = new URI(url);
        } catch (URISyntaxException e) {
            throw new InputRefusedException(subject + " is not a valid URL: " + e.getReason());
        }
        String scheme = uri.getScheme() == null ? "" : uri.getScheme().toLowerCase(Locale.ROOT);
        if (!scheme.equals("https") && !(allowHttp && scheme.equals("http"))) {
            throw new InputRefusedException(subject + " leads to " + redact(uri) + ", which is not https");
        }
        if (uri.getHost() == null) {
            throw new InputRefusedException(subject + " leads to a URL without a host");
        }
        return uri;
    }

    /** Scheme, host and path only: query strings often hold signatures. */
    static String redact(URI uri) {
        return uri.getScheme() + "://" + uri.getHost() + (uri.getPort() > 0 ? ":" + uri.getPort() : "")
                + (uri.getRawPath() == null ? "" : uri.getRawPath());
    }

    @Override
    public void close() throws IOException {
        client.close();
    }

    /** Thrown from inside the resolver; an UnknownHostException so that HttpClient lets it through untouched. */
    static final class RefusedAddressException extends UnknownHostException {
        RefusedAddressException(String message) {
            super(message);
        }
    }
}
