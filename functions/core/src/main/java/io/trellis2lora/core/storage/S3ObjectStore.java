package io.trellis2lora.orchestration;

import io.trellis2lora.core.storage.S3Objects;
import io.trellis2lora.core.storage.S3Uri;
import java.util.Optional;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.services.s3.S3Client;

/** The requests bucket. */
public final class S3ObjectStore implements ObjectStore {
    private final S3Client s3;
    private final String bucket;

    public S3ObjectStore(S3Client s3, String bucket) {
        this.s3 = s3;
        this.bucket = bucket;
    }

    public S3Client client() {
        return s3;
    }

    public String bucket() {
        return bucket;
    }

    @Override
    public String uri(String key) {
        return new S3Uri(bucket, key).toString();
    }

    @Override
    public Optional<String> keyOf(String uri) {
        if (!S3Uri.isS3(uri)) {
            return Optional.empty();
        }
        S3Uri u = S3Uri.parse(uri);
        return u.bucket().equals(bucket) ? Optional.of(u.key()) : Optional.empty();
    }

    @Override
    public Optional<byte[]> read(String key) {
        return S3Objects.read(s3, bucket, key);
    }

    @Override
    public void write(String key, byte[] data, String contentType) {
        s3.putObject(b -> b.bucket(bucket).key(key).contentType(contentType), RequestBody.fromBytes(data));
    }

    @Override
    public long size(String key) {
        return S3Objects.size(s3, bucket, key).orElse(-1);
    }

    @Override
    public void delete(String key) {
        s3.deleteObject(b -> b.bucket(bucket).key(key));
    }
}
