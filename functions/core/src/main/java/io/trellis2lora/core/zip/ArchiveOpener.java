package io.trellis2lora.core.zip;

import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.net.SafeHttp;
import io.trellis2lora.core.storage.S3Uri;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Path;
import java.util.Locale;
import org.apache.http.client.methods.CloseableHttpResponse;
import software.amazon.awssdk.services.s3.S3Client;

/** Opens a data_url (s3://, https://, or a local path in local mode) for inspection. */
public final class ArchiveOpener {
    private final S3Client s3;
    private final SafeHttp http;

    /** @param s3 null where no S3 is configured (local mode): s3:// URLs are then refused */
    public ArchiveOpener(S3Client s3, SafeHttp http) {
        this.s3 = s3;
        this.http = http;
    }

    /**
     * An open source plus the URI the later steps should read the archive from: the data_url itself, or the
     * staged copy when the server ignored Range requests ({@code staged} is then true).
     */
    public record Opened(RangeSource source, String inputUri, boolean staged) implements AutoCloseable {
        @Override
        public void close() throws IOException {
            source.close();
        }
    }

    public Opened open(String dataUrl, Stager stager) throws IOException {
        String lower = dataUrl.toLowerCase(Locale.ROOT);
        if (S3Uri.isS3(dataUrl)) {
            if (s3 == null) {
                throw new InputRefusedException("s3:// data_url needs AWS access, which local mode does not have");
            }
            S3Uri uri;
            try {
                uri = S3Uri.parse(dataUrl);
            } catch (IllegalArgumentException e) {
                throw new InputRefusedException(e.getMessage());
            }
            return new Opened(new S3RangeSource(s3, uri), dataUrl, false);
        }
        if (lower.startsWith("https://")) {
            HttpRangeSource.Probe probe = HttpRangeSource.probe(http, dataUrl);
            if (probe.source() != null) {
                return new Opened(probe.source(), dataUrl, false);
            }
            try (CloseableHttpResponse resp = probe.wholeBody()) {
                long declared = resp.getEntity() == null ? -1 : resp.getEntity().getContentLength();
                if (declared > ZipInspector.MAX_ARCHIVE_BYTES) {
                    throw new InputRefusedException(String.format(Locale.ROOT,
                            "archive is %,d MB, over the %d MB limit", declared / (1024 * 1024),
                            ZipInspector.MAX_ARCHIVE_BYTES / (1024 * 1024)));
                }
                if (resp.getEntity() == null) {
                    throw new InputRefusedException("data_url " + HttpRangeSource.shown(dataUrl) + " is empty");
                }
                String staged;
                try (InputStream body = resp.getEntity().getContent()) {
                    staged = stager.stage(body, HttpRangeSource.shown(dataUrl));
                }
                return new Opened(reopen(staged), staged, true);
            }
        }
        if (lower.matches("^[a-z][a-z0-9+.-]*://.*")) {
            throw new InputRefusedException("data_url must be an https:// or s3:// URL");
        }
        return new Opened(new FileRangeSource(Path.of(dataUrl)), Path.of(dataUrl).toAbsolutePath().toString(),
                false);
    }

    private RangeSource reopen(String staged) throws IOException {
        return S3Uri.isS3(staged) ? new S3RangeSource(s3, S3Uri.parse(staged)) : new FileRangeSource(Path.of(staged));
    }
}
