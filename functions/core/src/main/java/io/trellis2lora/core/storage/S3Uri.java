package io.trellis2lora.core.storage;

/** {@code s3://bucket/key}. */
public record S3Uri(String bucket, String key) {
    public S3Uri {
        if (bucket == null || bucket.isEmpty() || key == null || key.isEmpty()) {
            throw new IllegalArgumentException("an S3 URI needs a bucket and a key");
        }
    }

    public static boolean isS3(String uri) {
        return uri != null && uri.regionMatches(true, 0, "s3://", 0, 5);
    }

    public static S3Uri parse(String uri) {
        if (!isS3(uri)) {
            throw new IllegalArgumentException("not an s3:// URI: " + uri);
        }
        String rest = uri.substring(5);
        int slash = rest.indexOf('/');
        if (slash <= 0 || slash == rest.length() - 1) {
            throw new IllegalArgumentException("expected s3://bucket/key, got " + uri);
        }
        return new S3Uri(rest.substring(0, slash), rest.substring(slash + 1));
    }

    @Override
    public String toString() {
        return "s3://" + bucket + "/" + key;
    }
}
