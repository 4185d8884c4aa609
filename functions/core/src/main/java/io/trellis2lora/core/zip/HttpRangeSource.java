package io.trellis2lora.core.zip;

import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.net.SafeHttp;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.http.Header;
import org.apache.http.client.methods.CloseableHttpResponse;

/**
 * An archive behind an https URL, read with HTTP Range requests. The first request asks for the last 64 KiB
 * (a suffix range), which both sizes the file and usually holds the end-of-central-directory record.
 */
public final class HttpRangeSource implements RangeSource {
    private static final Pattern CONTENT_RANGE = Pattern.compile("bytes (\\d+)-(\\d+)/(\\d+)");
    static final int TAIL = ZipInspector.EOCD_LEN + ZipInspector.MAX_COMMENT + 20;

    private final SafeHttp http;
    private final String url;
    private final long size;
    private final long tailStart;
    private final byte[] tail;
    private int reads = 1;

    /** Either a ranged source, or (the server ignored Range) the open response streaming the whole archive. */
    public record Probe(HttpRangeSource source, CloseableHttpResponse wholeBody) {
    }

    private HttpRangeSource(SafeHttp http, String url, long size, long tailStart, byte[] tail) {
        this.http = http;
        this.url = url;
        this.size = size;
        this.tailStart = tailStart;
        this.tail = tail;
    }

    public static Probe probe(SafeHttp http, String url) throws IOException {
        CloseableHttpResponse resp = http.get(url, "bytes=-" + TAIL);
        boolean handedOver = false;
        try {
            int status = resp.getStatusLine().getStatusCode();
            if (status == 200) {
                handedOver = true;
                return new Probe(null, resp);
            }
            if (status == 416) {
                throw new InputRefusedException("data_url " + shown(url) + " is empty");
            }
            if (status != 206) {
                throw httpRefusal(url, status);
            }
            Matcher m = contentRange(resp);
            long start = Long.parseLong(m.group(1));
            long end = Long.parseLong(m.group(2));
            long total = Long.parseLong(m.group(3));
            int len = (int) (end - start + 1);
            if (end < start || end >= total || len > TAIL) {
                throw new IOException("server sent an inconsistent Content-Range for " + shown(url));
            }
            byte[] body = readExactly(resp, len);
            return new Probe(new HttpRangeSource(http, url, total, start, body), null);
        } finally {
            if (!handedOver) {
                resp.close();
            }
        }
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public byte[] read(long offset, int length) throws IOException {
        requireWithin(offset, length);
        if (offset >= tailStart) {
            byte[] out = new byte[length];
            System.arraycopy(tail, (int) (offset - tailStart), out, 0, length);
            return out;
        }
        if (length == 0) {
            return new byte[0];
        }
        reads++;
        try (CloseableHttpResponse resp = http.get(url, "bytes=" + offset + "-" + (offset + length - 1))) {
            int status = resp.getStatusLine().getStatusCode();
            if (status != 206) {
                throw new IOException("server answered HTTP " + status + " to a range request for " + shown(url));
            }
            Matcher m = contentRange(resp);
            if (Long.parseLong(m.group(1)) != offset) {
                throw new IOException("server sent another range than asked for " + shown(url));
            }
            return readExactly(resp, length);
        }
    }

    private static Matcher contentRange(CloseableHttpResponse resp) throws IOException {
        Header h = resp.getFirstHeader("Content-Range");
        Matcher m = h == null ? null : CONTENT_RANGE.matcher(h.getValue().trim());
        if (m == null || !m.matches()) {
            throw new IOException("partial answer without a usable Content-Range header");
        }
        return m;
    }

    private static byte[] readExactly(CloseableHttpResponse resp, int len) throws IOException {
        if (resp.getEntity() == null) {
            throw new EOFException("empty answer to a range request");
        }
        try (InputStream in = resp.getEntity().getContent()) {
            byte[] data = in.readNBytes(len);
            if (data.length != len) {
                throw new EOFException("server sent " + data.length + " of " + len + " bytes");
            }
            return data;
        }
    }

    static InputRefusedException httpRefusal(String url, int status) {
        String why = switch (status) {
            case 401, 403 -> " (access denied)";
            case 404, 410 -> " (not found)";
            default -> "";
        };
        return new InputRefusedException("data_url " + shown(url) + " answered HTTP " + status + why);
    }

    static String shown(String url) {
        int q = url.indexOf('?');
        return q < 0 ? url : url.substring(0, q);
    }

    @Override
    public String describe() {
        return shown(url);
    }

    @Override
    public int readCount() {
        return reads;
    }
}
