package io.trellis2lora.infrastructure;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Set;
import software.amazon.awscdk.Aws;
import software.amazon.awscdk.RemovalPolicy;
import software.amazon.awscdk.services.iam.Effect;
import software.amazon.awscdk.services.iam.IGrantable;
import software.amazon.awscdk.services.iam.PolicyStatement;
import software.amazon.awscdk.services.iam.PolicyStatementProps;
import software.amazon.awscdk.services.logs.LogGroup;
import software.amazon.awscdk.services.logs.LogGroupProps;
import software.amazon.awscdk.services.logs.RetentionDays;
import software.amazon.awscdk.services.s3.Bucket;
import software.constructs.Construct;

/**
 * One section of the stack (storage, queues, jobs, functions, workflow, API, alarms) as a construct of its own. The
 * sections only group: a resource's logical id is the one it had as a direct child of the stack ({@link #logicalId}),
 * so a deployed stack keeps every resource across the split.
 */
abstract class Section extends Construct {
    /** The section constructs' ids, left out of logical ids. */
    static final Set<String> IDS = Set.of("Storage", "Queues", "Jobs", "Functions", "Workflow", "PublicApi", "Alarms");

    static final RetentionDays LOG_RETENTION = RetentionDays.ONE_MONTH;

    Section(Construct scope, String id) {
        super(scope, id);
        if (!IDS.contains(id)) {
            throw new IllegalArgumentException("not a section id: " + id);
        }
    }

    LogGroup logGroup(String id) {
        return new LogGroup(this, id, LogGroupProps.builder().retention(LOG_RETENTION)
                .removalPolicy(RemovalPolicy.DESTROY).build());
    }

    static String arn(String service, String resource) {
        return "arn:" + Aws.PARTITION + ":" + service + ":" + Aws.REGION + ":" + Aws.ACCOUNT_ID + ":" + resource;
    }

    static PolicyStatement statement(List<String> actions, List<String> resources) {
        return new PolicyStatement(PolicyStatementProps.builder().effect(Effect.ALLOW).actions(actions)
                .resources(resources).build());
    }

    static void allow(IGrantable who, Bucket bucket, List<String> actions, String... keyPatterns) {
        List<String> resources = new ArrayList<>();
        for (String p : keyPatterns) {
            resources.add(bucket.arnForObjects(p));
        }
        who.getGrantPrincipal().addToPrincipalPolicy(statement(actions, resources));
    }

    /** Lets a missing key answer 404 rather than 403, which the code reads as "not there". */
    static void listBucket(IGrantable who, Bucket... buckets) {
        List<String> arns = new ArrayList<>();
        for (Bucket b : buckets) {
            arns.add(b.getBucketArn());
        }
        who.getGrantPrincipal().addToPrincipalPolicy(statement(List.of("s3:ListBucket"), arns));
    }

    /** The CDK's logical id for a construct path below the stack, with a leading section id left out. */
    static String logicalId(List<String> path) {
        List<String> components = new ArrayList<>(path);
        if (!components.isEmpty() && IDS.contains(components.get(0))) {
            components.remove(0);
        }
        return uniqueId(components);
    }

    /**
     * The CDK's unique id of a path (makeUniqueId in aws-cdk-lib core/lib/private/uniqueid.ts, which is not public):
     * "Default" components dropped, one component used as it is, else the human-readable components (no "Resource",
     * no repeats) followed by the first 8 hex digits of the MD5 of the path, upper case.
     */
    static String uniqueId(List<String> path) {
        List<String> components = new ArrayList<>(path);
        components.removeIf("Default"::equals);
        if (components.isEmpty()) {
            throw new IllegalArgumentException("no unique id for an empty path");
        }
        if (components.size() == 1) {
            String only = alphanumeric(components.get(0));
            if (only.length() <= 255) {
                return only;
            }
        }
        StringBuilder human = new StringBuilder();
        String previous = null;
        for (String c : components) {
            if (previous != null && previous.endsWith(c)) {
                continue;
            }
            previous = c;
            if (!c.equals("Resource")) {
                human.append(alphanumeric(c));
            }
        }
        String h = human.length() > 240 ? human.substring(0, 240) : human.toString();
        return h + md5(String.join("/", components)).substring(0, 8).toUpperCase();
    }

    private static String alphanumeric(String s) {
        return s.replaceAll("[^A-Za-z0-9]", "");
    }

    private static String md5(String s) {
        try {
            byte[] digest = MessageDigest.getInstance("MD5").digest(s.getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(digest);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
