package io.trellis2lora.infrastructure;

import java.util.List;
import software.amazon.awscdk.CfnParameter;
import software.amazon.awscdk.CfnParameterProps;
import software.amazon.awscdk.Duration;
import software.amazon.awscdk.RemovalPolicy;
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
    final Bucket requests;
    final Bucket uploads;

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
