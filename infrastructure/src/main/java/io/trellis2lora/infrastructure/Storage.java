package io.trellis2lora.infrastructure;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;
import software.amazon.awscdk.Aws;
import software.amazon.awscdk.CfnParameter;
import software.amazon.awscdk.CfnParameterProps;
import software.amazon.awscdk.Duration;
import software.amazon.awscdk.RemovalPolicy;
import software.amazon.awscdk.services.iam.IGrantable;
import software.amazon.awscdk.services.s3.BlockPublicAccess;
import software.amazon.awscdk.services.s3.Bucket;
import software.amazon.awscdk.services.s3.BucketEncryption;
import software.amazon.awscdk.services.s3.BucketProps;
import software.amazon.awscdk.services.s3.LifecycleRule;
import software.amazon.awscdk.services.s3.ObjectOwnership;
import software.constructs.Construct;

/**
 * The two buckets. The platform keeps requests/ and datasets/ in one (core's StorageLayout); uploads
 * arrive in a bucket of their own. Each prefix expires after the days its parameter gives.
 */
final class Storage extends Section {
    /** Context value: more buckets an s3:// data_url may name, comma-separated (read-only to the stack). */
    static final String DATA_BUCKETS_CONTEXT = "dataBuckets";
    private static final Pattern BUCKET_NAME = Pattern.compile("[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]");

    final Bucket requests;
    final Bucket uploads;
    /** The deployer's own buckets (context {@value #DATA_BUCKETS_CONTEXT}), besides the uploads bucket. */
    final List<String> extraDataBuckets;

    Storage(Construct scope) {
        super(scope, "Storage");
        CfnParameter uploadDays = days("UploadRetentionDays", 7,
                "Days an upload (a zip and its request sidecar) is kept");
        CfnParameter datasetDays = days("DatasetRetentionDays", 30,
                "Days a preprocessed dataset is kept for reuse and download");
        CfnParameter requestDays = days("RequestRetentionDays", 90,
                "Days a request's files (adapters, reports, result.json) are kept");
        requests = bucket("RequestsBucket", List.of(
                expire("datasets", "datasets/", Duration.days(datasetDays.getValueAsNumber())),
                expire("requests", "requests/", Duration.days(requestDays.getValueAsNumber()))));
        uploads = bucket("UploadsBucket", List.of(
                expire("uploads", null, Duration.days(uploadDays.getValueAsNumber()))));
        extraDataBuckets = dataBuckets(getNode().tryGetContext(DATA_BUCKETS_CONTEXT));
    }

    static List<String> dataBuckets(Object context) {
        String text = context == null ? "" : context.toString();
        List<String> out = new ArrayList<>();
        for (String b : text.split(",")) {
            String name = b.trim();
            if (name.isEmpty()) {
                continue;
            }
            if (!BUCKET_NAME.matcher(name).matches()) {
                throw new IllegalArgumentException("context " + DATA_BUCKETS_CONTEXT + ": '" + name
                        + "' is not an S3 bucket name");
            }
            out.add(name);
        }
        return List.copyOf(out);
    }

    /** TRELLIS2_DATA_BUCKETS: the uploads bucket, then the extra ones (never the requests bucket). */
    String dataBucketsEnvironment() {
        List<String> all = new ArrayList<>(List.of(uploads.getBucketName()));
        all.addAll(extraDataBuckets);
        return String.join(",", all);
    }

    /** What reads a data_url (submit, estimate, prepare, result's presigning, the jobs) may read the extra buckets. */
    void allowReadingExtraDataBuckets(IGrantable who) {
        if (extraDataBuckets.isEmpty()) {
            return;
        }
        List<String> objects = new ArrayList<>();
        List<String> buckets = new ArrayList<>();
        for (String b : extraDataBuckets) {
            buckets.add("arn:" + Aws.PARTITION + ":s3:::" + b);
            objects.add("arn:" + Aws.PARTITION + ":s3:::" + b + "/*");
        }
        who.getGrantPrincipal().addToPrincipalPolicy(statement(List.of("s3:GetObject"), objects));
        who.getGrantPrincipal().addToPrincipalPolicy(statement(List.of("s3:ListBucket"), buckets));
    }

    private CfnParameter days(String name, int fallback, String description) {
        return new CfnParameter(this, name, CfnParameterProps.builder().type("Number").defaultValue(fallback)
                .minValue(1).description(description).build());
    }

    private static LifecycleRule expire(String id, String prefix, Duration after) {
        LifecycleRule.Builder b = LifecycleRule.builder().id(id).expiration(after)
                .abortIncompleteMultipartUploadAfter(Duration.days(1));
        if (prefix != null) {
            b.prefix(prefix);
        }
        return b.build();
    }

    private Bucket bucket(String id, List<LifecycleRule> rules) {
        return new Bucket(this, id, BucketProps.builder()
                .encryption(BucketEncryption.S3_MANAGED)
                .blockPublicAccess(BlockPublicAccess.BLOCK_ALL)
                .enforceSsl(true)
                .objectOwnership(ObjectOwnership.BUCKET_OWNER_ENFORCED)
                .lifecycleRules(rules)
                .removalPolicy(RemovalPolicy.RETAIN)
                .build());
    }
}
