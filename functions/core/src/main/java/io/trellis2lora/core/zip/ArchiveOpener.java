package io.trellis2lora.core.zip;

import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.net.SafeHttp;
import io.trellis2lora.core.storage.S3Uri;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Path;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Locale;
import java.util.Set;
import java.util.TreeSet;
import org.apache.http.client.methods.CloseableHttpResponse;
import software.amazon.awssdk.services.s3.S3Client;

/**
 * Opens a data_url (s3://, https://, or a local path in local mode) for inspection. Only the buckets it is given may
 * be named by an s3:// data_url: the functions' roles can read more than a user should (the requests bucket holds
 * every request's inputs and adapters).
 */
public final class ArchiveOpener {
    private final S3Client s3;
    private final SafeHttp http;
    private final Set<String> s3Buckets;

    /**
     * Any bucket the credentials reach: the command line, which runs with the user's own credentials.
     *
     * @param s3 null where no S3 is configured (local mode): s3:// URLs are then refused
     */
    public ArchiveOpener(S3Client s3, SafeHttp http) {
        this(s3, http, null);
    }

    /** @param s3Buckets the buckets an s3:// data_url may name (the deployment's TRELLIS2_DATA_BUCKETS); null: any */
    public ArchiveOpener(S3Client s3, SafeHttp http, Set<String> s3Buckets) {
        this.s3 = s3;
        this.http = http;
        this.s3Buckets = s3Buckets == null ? null : Set.copyOf(s3Buckets);
    }

    /**
     * An open source plus the URI the later steps should read the archive from: the data_url itself, or the
     * staged copy when the server ignored Range requests ({@code staged} is then true, and {@code stagedSha256} the
     * digest of the bytes copied). Without a stager such an archive is not downloaded: {@code source} is null
     * ({@link #deferred}) and Prepare, which has the time, stages it.
     */
    public record Opened(RangeSource source, String inputUri, boolean staged, String stagedSha256)
            implements AutoCloseable {
        public boolean deferred() {
            return source == null;
        }

        @Override
        public void close() throws IOException {
            if (source != null) {
                source.close();
            }
        }
    }

    /** @param stager where an archive whose server ignores Range is copied; null to defer it (the API's 29 s) */
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
            if (s3Buckets != null && !s3Buckets.contains(uri.bucket())) {
                throw new InputRefusedException("data_url bucket '" + uri.bucket() + "' is not one this deployment "
                        + "reads from" + (s3Buckets.isEmpty() ? " (it reads no s3:// data_url; use an https:// URL)"
                        : " (allowed: " + String.join(", ", new TreeSet<>(s3Buckets)) + ")"));
            }
            return new Opened(new S3RangeSource(s3, uri), dataUrl, false, null);
        }
        if (lower.startsWith("https://")) {
            HttpRangeSource.Probe probe = HttpRangeSource.probe(http, dataUrl);
            if (probe.source() != null) {
                return new Opened(probe.source(), dataUrl, false, null);
            }
            // Closing the response without reading its body drops the connection: nothing more is downloaded.
            try (CloseableHttpResponse resp = probe.wholeBody()) {
                long declared = resp.getEntity() == null ? -1 : resp.getEntity().getContentLength();
                if (declared > ZipInspector.MAX_ARCHIVE_BYTES) {
                    throw new InputRefusedException(String.format(Locale.ROOT,
                            "archive is %,d MB, over the %d MB limit", declared / (1024 * 1024),
                            ZipInspector.MAX_ARCHIVE_BYTES / (1024 * 1024)));
                }
                if (resp.getEntity() == null || declared == 0) {
                    throw new InputRefusedException("data_url " + HttpRangeSource.shown(dataUrl) + " is empty");
                }
                if (stager == null) {
                    return new Opened(null, dataUrl, false, null);
                }
                String staged;
                MessageDigest sha256 = sha256();
                try (InputStream body = new DigestInputStream(resp.getEntity().getContent(), sha256)) {
                    staged = stager.stage(body, HttpRangeSource.shown(dataUrl));
                }
                return new Opened(reopen(staged), staged, true, HexFormat.of().formatHex(sha256.digest()));
            }
        }
        if (lower.matches("^[a-z][a-z0-9+.-]*://.*")) {
            throw new InputRefusedException("data_url must be an https:// or s3:// URL");
        }
        return new Opened(new FileRangeSource(Path.of(dataUrl)), Path.of(dataUrl).toAbsolutePath().toString(),
                false, null);
    }

    private RangeSource reopen(String staged) throws IOException {
        return S3Uri.isS3(staged) ? new S3RangeSource(s3, S3Uri.parse(staged)) : new FileRangeSource(Path.of(staged));
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
