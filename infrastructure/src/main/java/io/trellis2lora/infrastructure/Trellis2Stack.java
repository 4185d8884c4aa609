package io.trellis2lora.infrastructure;

import io.trellis2lora.orchestration.Preparer;
import io.trellis2lora.orchestration.Sharding;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import software.amazon.awscdk.CfnElement;
import software.amazon.awscdk.CfnOutput;
import software.amazon.awscdk.CfnOutputProps;
import software.amazon.awscdk.CfnParameter;
import software.amazon.awscdk.CfnParameterProps;
import software.amazon.awscdk.Duration;
import software.amazon.awscdk.Stack;
import software.amazon.awscdk.StackProps;
import software.amazon.awscdk.services.apigateway.CfnDeployment;
import software.amazon.awscdk.services.lambda.Code;
import software.amazon.awscdk.services.s3.Bucket;
import software.amazon.awscdk.services.s3.IBucket;
import software.constructs.Construct;
import software.constructs.IConstruct;

/**
 * Everything the service runs on, in one stack, built in the order a request flows through it (ARCHITECTURE.md's
 * diagram): storage and queues; the Batch GPU jobs; the nine Lambda functions; the state machine from
 * step-functions/ that calls them; the REST API in front; alarms on the whole. Each section is a construct of its own.
 */
public final class Trellis2Stack extends Stack {
    /** What the stack deploys: the Lambda packages and the state machine definition. */
    public record Sources(FunctionCode code, Path stateMachineFile) {
    }

    /** Where each Lambda function's package comes from. */
    public interface FunctionCode {
        Code of(Construct scope, String function);

        /**
         * The build's own output, functions/NAME/target/function.zip (`mvn -DskipTests install` makes them); the CDK
         * uploads them as assets on deploy.
         */
        static FunctionCode fromBuildOutput(Path functionsDir) {
            return (scope, name) -> {
                Path zip = functionsDir.resolve(name).resolve("target").resolve("function.zip");
                if (!Files.isRegularFile(zip)) {
                    throw new IllegalStateException(zip + " is missing: build the Lambda packages first "
                            + "(mvn -B -DskipTests install at the repository root)");
                }
                return Code.fromAsset(zip.toAbsolutePath().toString());
            };
        }

        /** Packages a release pipeline already uploaded: s3://BUCKET/PREFIXNAME/function.zip. */
        static FunctionCode fromBucket(String bucketName, String prefix) {
            return (scope, name) -> {
                IBucket bucket = (IBucket) scope.getNode().tryFindChild("FunctionPackages");
                if (bucket == null) {
                    bucket = Bucket.fromBucketName(scope, "FunctionPackages", bucketName);
                }
                return Code.fromBucket(bucket, prefix + name + "/function.zip");
            };
        }
    }

    /** The Lambda modules under functions/, each leaving target/function.zip. */
    public static final List<String> FUNCTIONS = List.of("submit", "estimate", "status", "result", "cancel",
            "prepare", "finalize", "upload-trigger", "webhook");

    /** Quarkus Amazon Lambda's entry point; each module has exactly one handler. */
    public static final String QUARKUS_HANDLER = "io.quarkus.amazon.lambda.runtime.QuarkusStreamHandler::handleRequest";

    /** Worker exit code for "the input is at fault": never retried. */
    public static final String INPUT_ERROR_EXIT_CODE = "2";

    /** What the jobs get on each attempt; the ASL's per-attempt timeout matches. */
    public static final Duration JOB_ATTEMPT_TIMEOUT = Duration.hours(12);

    /** Both jobs ask for this; every instance type in {@link GpuInstances} holds one. */
    public static final int JOB_VCPUS = 8;
    public static final int JOB_MEMORY_GIB = 56;
    public static final int JOB_GPUS = 1;

    /** Where an upload starts a request by itself (functions/upload-trigger). */
    public static final String UPLOAD_PREFIX = "uploads/";

    public static final String CACHE_HOST_PATH = "/var/lib/trellis2-cache";

    /** The images run as this uid (USER in batch-containers/Dockerfile.*); it owns the host cache directory. */
    public static final int CONTAINER_UID = 1000;

    private Map<String, String> sectionlessUniqueIds = Map.of();

    public Trellis2Stack(Construct scope, String id, StackProps props, Sources sources) {
        super(scope, id, props);
        CfnParameter maxVcpus = new CfnParameter(this, "MaxVCpus", CfnParameterProps.builder().type("Number")
                .defaultValue(192).minValue(JOB_VCPUS)
                .description("Most vCPUs each GPU compute environment (spot, on-demand) may run at once; "
                        + JOB_VCPUS + " per job").build());
        CfnParameter imageTag = new CfnParameter(this, "ImageTag", CfnParameterProps.builder().type("String")
                .defaultValue("latest").allowedPattern("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
                .description("Tag of the preprocess and train images in their ECR repositories").build());
        CfnParameter baseModel = new CfnParameter(this, "BaseModel", CfnParameterProps.builder().type("String")
                .defaultValue(Preparer.DEFAULT_BASE_MODEL).minLength(1)
                .description("The worker's --base: a Hugging Face repo id").build());

        CfnParameter objectsPerShard = new CfnParameter(this, "ObjectsPerShard", CfnParameterProps.builder()
                .type("Number").defaultValue(Sharding.DEFAULT_OBJECTS_PER_SHARD).minValue(1)
                .description("Objects per preprocessing shard (one GPU job each; ~30 s an object on a GPU)").build());
        CfnParameter maxShards = new CfnParameter(this, "MaxPreprocessShards", CfnParameterProps.builder()
                .type("Number").defaultValue(Sharding.DEFAULT_MAX_SHARDS).minValue(1).maxValue(Sharding.MAX_SHARDS)
                .description("Most preprocessing shards of one request (children of its array job); 1 turns "
                        + "sharding off").build());

        Storage storage = new Storage(this);
        Queues queues = new Queues(this, storage);
        Jobs jobs = new Jobs(this, storage, maxVcpus.getValueAsNumber(), imageTag.getValueAsString());
        Functions functions = new Functions(this, storage, queues, sources.code(), baseModel.getValueAsString());
        // Prepare cuts preprocessing into shards (orchestration's Sharding reads these, with its defaults).
        functions.get("prepare").addEnvironment("TRELLIS2_OBJECTS_PER_SHARD", objectsPerShard.getValueAsString());
        functions.get("prepare").addEnvironment("TRELLIS2_MAX_PREPROCESS_SHARDS", maxShards.getValueAsString());
        Workflow workflow = new Workflow(this, sources.stateMachineFile(), storage, functions, jobs);
        functions.grant(workflow.stateMachine);
        functions.grantJobQueue(jobs.queue, jobs.jobLogs);
        PublicApi api = new PublicApi(this, functions);
        Alarms alarms = new Alarms(this, workflow.stateMachine, queues, jobs);
        fixLogicalIds(List.of(storage, queues, jobs, functions, workflow, api, alarms));

        output("ApiKeyId", api.key.getKeyId(), "aws apigateway get-api-key --include-value --api-key <id>");
        output("AlarmTopicArn", alarms.topic.getTopicArn(), "Subscribe to receive the alarms");
        output("ApiUrl", api.api.getUrl(), "Base URL of the REST API");
        output("RequestsBucketName", storage.requests.getBucketName(), "Requests, datasets and staging");
        output("UploadsBucketName", storage.uploads.getBucketName(),
                "data_url objects; uploads/NAME.zip (after its sidecar uploads/NAME.json) starts a request");
        output("StateMachineArn", workflow.stateMachine.getStateMachineArn(), "One execution per request id");
        output("PreprocessRepositoryUri", jobs.preprocessRepository.getRepositoryUri(),
                "docker push target: preprocess");
        output("TrainRepositoryUri", jobs.trainRepository.getRepositoryUri(), "docker push target: train");
        output("HuggingFaceTokenSecretArn", jobs.hfToken.getSecretArn(), "Set the Hugging Face token here");
        output("JobQueueArn", jobs.queue.getJobQueueArn(), "Batch job queue (spot first)");
        output("MergeJobQueueArn", jobs.mergeQueue.getJobQueueArn(), "Batch CPU job queue of the preprocessing merge");
    }

    /**
     * A resource keeps the logical id it had before the stack was split into sections (see {@link Section}): the
     * section is left out of its path, and out of the unique ids of other constructs that the CDK writes into
     * construct ids (an event source names its queue, an API permission its REST API), so a deployed stack updates
     * in place instead of replacing resources. The CDK asks here for elements without an explicit logical id.
     */
    @Override
    protected String allocateLogicalId(CfnElement element) {
        return sectionless(pathBelowStack(element));
    }

    /**
     * The same ids set on every element of the sections once they are built: the CDK then asks
     * {@link #allocateLogicalId} only for the few left (it calls it from JavaScript once per reference, and that
     * many callbacks in a row overflow jsii's Java stack). An API deployment keeps the id it makes for itself.
     */
    private void fixLogicalIds(List<Section> sections) {
        sectionlessUniqueIds = sectionlessUniqueIds(getNode().getId(), sections);
        for (Section section : sections) {
            for (IConstruct c : section.getNode().findAll()) {
                if (CfnElement.isCfnElement(c) && !(c instanceof CfnDeployment)) {
                    ((CfnElement) c).overrideLogicalId(sectionless(pathBelowStack(c)));
                }
            }
        }
    }

    private List<String> pathBelowStack(IConstruct construct) {
        List<String> path = new ArrayList<>();
        boolean below = false;
        for (IConstruct c : construct.getNode().getScopes()) {
            if (below) {
                path.add(c.getNode().getId());
            } else if (c.getNode().getPath().equals(getNode().getPath())) {
                below = true;
            }
        }
        return path;
    }

    private String sectionless(List<String> path) {
        List<String> rewritten = new ArrayList<>();
        for (String component : path) {
            for (Map.Entry<String, String> e : sectionlessUniqueIds.entrySet()) {
                component = component.replace(e.getKey(), e.getValue());
            }
            rewritten.add(component);
        }
        return Section.logicalId(rewritten);
    }

    /** For each construct directly in a section: its unique id with the section, and the one it had without. */
    private static Map<String, String> sectionlessUniqueIds(String stack, List<Section> sections) {
        Map<String, String> out = new LinkedHashMap<>();
        for (Section section : sections) {
            String sectionId = section.getNode().getId();
            for (IConstruct child : section.getNode().getChildren()) {
                String id = child.getNode().getId();
                out.put(Section.uniqueId(List.of(stack, sectionId, id)), Section.uniqueId(List.of(stack, id)));
            }
        }
        return out;
    }

    private void output(String id, String value, String description) {
        new CfnOutput(this, id, CfnOutputProps.builder().value(value).description(description).build());
    }
}
