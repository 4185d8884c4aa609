package io.trellis2lora.infrastructure;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import software.amazon.awscdk.Duration;
import software.amazon.awscdk.Size;
import software.amazon.awscdk.Stack;
import software.amazon.awscdk.services.batch.JobQueue;
import software.amazon.awscdk.services.lambda.Architecture;
import software.amazon.awscdk.services.lambda.Function;
import software.amazon.awscdk.services.lambda.FunctionProps;
import software.amazon.awscdk.services.lambda.Runtime;
import software.amazon.awscdk.services.lambda.Tracing;
import software.amazon.awscdk.services.lambda.eventsources.SqsEventSource;
import software.amazon.awscdk.services.lambda.eventsources.SqsEventSourceProps;
import software.amazon.awscdk.services.logs.LogGroup;
import software.amazon.awscdk.services.stepfunctions.StateMachine;
import software.constructs.Construct;

/**
 * The nine Lambda functions (one per module in {@link Trellis2Stack#FUNCTIONS}), sized to their work, with their
 * queues as event sources; {@link #grant} gives each only what it touches once the state machine exists.
 */
final class Functions extends Section {
    /** Memory and timeout per function, sized to its work; API functions stay under API Gateway's 29 s. */
    record Sizing(int memoryMb, Duration timeout, Size ephemeralStorage) {
    }

    private final Map<String, Function> byName = new LinkedHashMap<>();
    private final Storage storage;
    private final Queues queues;

    Functions(Construct scope, Storage storage, Queues queues, Trellis2Stack.FunctionCode code, String baseModel) {
        super(scope, "Functions");
        this.storage = storage;
        this.queues = queues;
        Map<String, Sizing> sizes = sizing();
        for (String name : Trellis2Stack.FUNCTIONS) {
            String id = camel(name);
            LogGroup logs = logGroup(id + "FunctionLogs");
            Sizing s = sizes.get(name);
            Map<String, String> env = new LinkedHashMap<>();
            env.put("TRELLIS2_REQUESTS_BUCKET", storage.requests.getBucketName());
            env.put("TRELLIS2_PRESIGN_SECONDS", "3600");
            env.put("TRELLIS2_BASE_MODEL", baseModel);
            // The buckets an s3:// data_url may name: never the requests bucket, which every role can read.
            env.put("TRELLIS2_DATA_BUCKETS", storage.dataBucketsEnvironment());
            // Quarkus reads the JVM options from here; tiered compilation level 1 starts Java faster.
            env.put("JAVA_TOOL_OPTIONS", "-XX:+TieredCompilation -XX:TieredStopAtLevel=1");
            byName.put(name, new Function(this, id + "Function", FunctionProps.builder()
                    .runtime(Runtime.JAVA_17)
                    .architecture(Architecture.X86_64)
                    .handler(Trellis2Stack.QUARKUS_HANDLER)
                    .code(code.of(Stack.of(this), name))
                    .memorySize(s.memoryMb())
                    .timeout(s.timeout())
                    .ephemeralStorageSize(s.ephemeralStorage())
                    .environment(env)
                    .logGroup(logs)
                    .tracing(Tracing.ACTIVE)
                    .description("trellis2-lora " + name)
                    .build()));
        }
        get("finalize").addEnvironment("TRELLIS2_WEBHOOK_QUEUE_URL", queues.webhooks.getQueueUrl());
        get("upload-trigger").addEventSource(new SqsEventSource(queues.uploadEvents, SqsEventSourceProps.builder()
                .batchSize(1).reportBatchItemFailures(true).build()));
        // The webhook function pushes a failed delivery's visibility out itself (exponential backoff).
        get("webhook").addEnvironment("TRELLIS2_WEBHOOK_QUEUE_URL", queues.webhooks.getQueueUrl());
        get("webhook").addEventSource(new SqsEventSource(queues.webhooks, SqsEventSourceProps.builder()
                .batchSize(1).reportBatchItemFailures(true).build()));
    }

    Function get(String name) {
        Function fn = byName.get(name);
        if (fn == null) {
            throw new IllegalArgumentException("no function " + name);
        }
        return fn;
    }

    static Map<String, Sizing> sizing() {
        Map<String, Sizing> m = new LinkedHashMap<>();
        Size tmp = Size.mebibytes(512);
        // submit/estimate read zip directories over ranged requests and never download an archive.
        m.put("submit", new Sizing(1024, Duration.seconds(29), tmp));
        m.put("estimate", new Sizing(1024, Duration.seconds(29), tmp));
        m.put("status", new Sizing(512, Duration.seconds(15), tmp));
        m.put("result", new Sizing(512, Duration.seconds(15), tmp));
        m.put("cancel", new Sizing(512, Duration.seconds(15), tmp));
        // Prepare stages an archive whose server ignores Range: Lambda's maximum, 900 s, is one streamed pass of
        // the 8 GB cap at >= 10 MB/s (download, hash, multipart upload; no /tmp), so no Batch staging job.
        // The state machine gives it 900 s, Finalize 300 s (describe_failure: 120 s).
        m.put("prepare", new Sizing(1536, Duration.seconds(900), tmp));
        m.put("finalize", new Sizing(1024, Duration.seconds(110), tmp));
        // Inspects the upload (an object in the uploads bucket) like submit does, by ranged reads.
        m.put("upload-trigger", new Sizing(1024, Duration.minutes(5), tmp));
        m.put("webhook", new Sizing(512, Duration.seconds(30), tmp));
        return m;
    }

    /** Least privilege: each function reads and writes only the keys its code touches. */
    void grant(StateMachine stateMachine) {
        // Not on prepare/finalize: the state machine already depends on them.
        for (String fn : List.of("submit", "status", "result", "cancel", "upload-trigger")) {
            get(fn).addEnvironment("TRELLIS2_STATE_MACHINE_ARN", stateMachine.getStateMachineArn());
        }
        var requests = storage.requests;
        var uploads = storage.uploads;
        List<String> write = List.of("s3:PutObject", "s3:AbortMultipartUpload");
        List<String> read = List.of("s3:GetObject");
        Function submit = get("submit");
        allow(submit, uploads, read, "*");
        allow(submit, requests, read, "requests/*");
        // request.json, and webhook.json for a fal_webhook given on the query string.
        allow(submit, requests, write, "requests/*/request.json", "requests/*/webhook.json");
        listBucket(submit, requests, uploads);
        stateMachine.grantStartExecution(submit);

        Function estimate = get("estimate");
        // Keeps nothing: it only reads the archive it prices.
        allow(estimate, uploads, read, "*");
        listBucket(estimate, uploads);

        Function status = get("status");
        allow(status, requests, read, "requests/*");
        listBucket(status, requests);
        stateMachine.grantExecution(status, "states:DescribeExecution", "states:GetExecutionHistory");

        // result hands out presigned URLs, which carry the signer's rights: it can read, never write.
        Function result = get("result");
        allow(result, requests, read, "requests/*", "datasets/*");
        // A preprocessed upload is its own dataset: the result links to it where it lies.
        allow(result, uploads, read, "*");
        listBucket(result, requests, uploads);
        stateMachine.grantExecution(result, "states:DescribeExecution");

        Function cancel = get("cancel");
        allow(cancel, requests, read, "requests/*");
        listBucket(cancel, requests);
        stateMachine.grantExecution(cancel, "states:DescribeExecution", "states:StopExecution");

        Function prepare = get("prepare");
        allow(prepare, uploads, read, "*");
        allow(prepare, requests, read, "requests/*", "datasets/*");
        // Its record of the inspected input, and the copy of an https archive whose server ignores Range.
        allow(prepare, requests, write, "requests/*/input.json", "requests/*/input.zip");
        listBucket(prepare, requests, uploads);

        Function finalize = get("finalize");
        allow(finalize, requests, read, "requests/*", "datasets/*");
        allow(finalize, requests, write, "requests/*", "datasets/*/dataset.json");
        // A failed stage's error report is moved from adapters/ to failures/.
        allow(finalize, requests, List.of("s3:DeleteObject"), "requests/*/adapters/*");
        listBucket(finalize, requests);
        queues.webhooks.grantSendMessages(finalize);

        Function trigger = get("upload-trigger");
        allow(trigger, uploads, read, Trellis2Stack.UPLOAD_PREFIX + "*");
        // A refused upload is reported beside it.
        allow(trigger, uploads, List.of("s3:PutObject"), Trellis2Stack.UPLOAD_PREFIX + "*.error.json");
        allow(trigger, requests, read, "requests/*");
        // request.json, and webhook.json for a sidecar's fal_webhook.
        allow(trigger, requests, write, "requests/*/request.json", "requests/*/webhook.json");
        listBucket(trigger, requests, uploads);
        stateMachine.grantStartExecution(trigger);

        for (String fn : List.of("submit", "estimate", "prepare", "result")) {
            storage.allowReadingExtraDataBuckets(get(fn));
        }

        // webhook consumes its queue (the event source grants that) and calls out over https; it signs the
        // payload's links, which carry the signer's rights: read, as the result function, never write.
        Function webhook = get("webhook");
        allow(webhook, requests, read, "requests/*", "datasets/*");
        allow(webhook, uploads, read, "*");
        listBucket(webhook, requests, uploads);
    }

    /**
     * The status function's view of the Batch queue: where the request's jobs wait (ListJobs, DescribeJobs: Batch
     * has no resource-level permissions for them) and the running jobs' recent lines from their log group.
     */
    void grantJobQueue(JobQueue queue, LogGroup jobLogs) {
        Function status = get("status");
        status.addEnvironment("TRELLIS2_JOB_QUEUE", queue.getJobQueueArn());
        status.addEnvironment("TRELLIS2_JOB_LOG_GROUP", jobLogs.getLogGroupName());
        status.addToRolePolicy(statement(List.of("batch:ListJobs", "batch:DescribeJobs"), List.of("*")));
        jobLogs.grant(status, "logs:GetLogEvents");
    }

    static String camel(String name) {
        StringBuilder b = new StringBuilder();
        for (String part : name.split("-")) {
            b.append(Character.toUpperCase(part.charAt(0))).append(part.substring(1));
        }
        return b.toString();
    }
}
