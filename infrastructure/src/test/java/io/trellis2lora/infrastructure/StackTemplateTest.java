package io.trellis2lora.infrastructure;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import software.amazon.awscdk.App;
import software.amazon.awscdk.AppProps;
import software.amazon.awscdk.StackProps;
import software.amazon.awscdk.assertions.Template;

/** Assertions on the synthesised CloudFormation template: what a deployer would otherwise find out in AWS. */
class StackTemplateTest {
    private static final String BUCKET = "AWS::S3::Bucket";
    private static final String FUNCTION = "AWS::Lambda::Function";
    private static final String JOB_DEFINITION = "AWS::Batch::JobDefinition";

    // ---- storage ----

    @Test
    void bucketsAreEncryptedPrivateAndRefusePlainHttp() {
        Map<String, JsonNode> buckets = Synth.resources(BUCKET);
        assertEquals(Set.of("RequestsBucket", "UploadsBucket"), prefixes(buckets.keySet()));
        for (Map.Entry<String, JsonNode> b : buckets.entrySet()) {
            JsonNode p = b.getValue().path("Properties");
            assertEquals("AES256", p.at("/BucketEncryption/ServerSideEncryptionConfiguration/0"
                    + "/ServerSideEncryptionByDefault/SSEAlgorithm").asText(), b.getKey());
            JsonNode block = p.path("PublicAccessBlockConfiguration");
            for (String f : List.of("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls",
                    "RestrictPublicBuckets")) {
                assertTrue(block.path(f).asBoolean(), b.getKey() + " " + f);
            }
            assertTrue(hasTlsOnlyPolicy(b.getKey()), b.getKey() + " must deny requests without TLS");
        }
    }

    private static boolean hasTlsOnlyPolicy(String bucketId) {
        for (JsonNode policy : Synth.resources("AWS::S3::BucketPolicy").values()) {
            if (!Synth.refersTo(policy.at("/Properties/Bucket"), bucketId)) {
                continue;
            }
            for (JsonNode s : policy.at("/Properties/PolicyDocument/Statement")) {
                if ("Deny".equals(s.path("Effect").asText())
                        && "false".equals(s.at("/Condition/Bool/aws:SecureTransport").asText())
                        && "s3:*".equals(s.path("Action").asText())) {
                    return true;
                }
            }
        }
        return false;
    }

    @Test
    void uploadsAndIntermediateFilesExpire() {
        JsonNode uploads = Synth.props(BUCKET, "UploadsBucket").at("/LifecycleConfiguration/Rules");
        assertEquals(1, uploads.size());
        assertTrue(uploads.get(0).path("Prefix").isMissingNode(), "the whole uploads bucket expires");
        assertEquals("UploadRetentionDays", uploads.get(0).at("/ExpirationInDays/Ref").asText());

        Map<String, JsonNode> byPrefix = new HashMap<>();
        for (JsonNode r : Synth.props(BUCKET, "RequestsBucket").at("/LifecycleConfiguration/Rules")) {
            byPrefix.put(r.path("Prefix").asText(), r);
            assertEquals("Enabled", r.path("Status").asText());
            assertEquals(1, r.at("/AbortIncompleteMultipartUpload/DaysAfterInitiation").asInt(),
                    "half-finished multipart uploads are dropped");
        }
        assertFalse(byPrefix.containsKey("staging/"), "nothing is staged outside a request any more");
        assertEquals("DatasetRetentionDays", byPrefix.get("datasets/").at("/ExpirationInDays/Ref").asText());
        assertEquals("RequestRetentionDays", byPrefix.get("requests/").at("/ExpirationInDays/Ref").asText());
    }

    // ---- queues ----

    @Test
    void eachQueueHasADeadLetterQueueAndIsEncrypted() {
        Map<String, JsonNode> queues = Synth.resources("AWS::SQS::Queue");
        assertEquals(4, queues.size(), queues.keySet().toString());
        for (String main : List.of("UploadEventsQueue", "WebhooksQueue")) {
            JsonNode p = Synth.props("AWS::SQS::Queue", main);
            String dlq = Synth.logicalId("AWS::SQS::Queue", main.replace("Queue", "DeadLetters"));
            assertTrue(Synth.refersTo(p.at("/RedrivePolicy/deadLetterTargetArn"), dlq), main);
            assertTrue(p.at("/RedrivePolicy/maxReceiveCount").asInt() >= 3, main);
        }
        for (Map.Entry<String, JsonNode> q : queues.entrySet()) {
            assertTrue(q.getValue().at("/Properties/SqsManagedSseEnabled").asBoolean(), q.getKey());
        }
    }

    @Test
    void uploadedRequestJsonFeedsTheUploadQueueAndItsFunction() {
        String queue = Synth.logicalId("AWS::SQS::Queue", "UploadEventsQueue");
        JsonNode notifications = Synth.resources("Custom::S3BucketNotifications").values().iterator().next();
        assertTrue(Synth.refersTo(notifications.at("/Properties/BucketName"),
                Synth.logicalId(BUCKET, "UploadsBucket")));
        JsonNode cfg = notifications.at("/Properties/NotificationConfiguration/QueueConfigurations/0");
        assertTrue(Synth.refersTo(cfg.path("QueueArn"), queue));
        assertEquals("s3:ObjectCreated:*", cfg.at("/Events/0").asText());
        Map<String, String> filter = new HashMap<>();
        cfg.at("/Filter/Key/FilterRules").forEach(r -> filter.put(r.path("Name").asText().toLowerCase(),
                r.path("Value").asText()));
        assertEquals(Map.of("prefix", "uploads/", "suffix", ".zip"), filter, "uploads/NAME.zip starts a request");

        assertTrue(eventSource("UploadTriggerFunction", "UploadEventsQueue"));
        assertTrue(eventSource("WebhookFunction", "WebhooksQueue"));
    }

    private static boolean eventSource(String function, String queue) {
        String fn = Synth.logicalId(FUNCTION, function);
        String q = Synth.logicalId("AWS::SQS::Queue", queue);
        for (JsonNode m : Synth.resources("AWS::Lambda::EventSourceMapping").values()) {
            if (Synth.refersTo(m.at("/Properties/FunctionName"), fn)
                    && Synth.refersTo(m.at("/Properties/EventSourceArn"), q)) {
                assertTrue(m.at("/Properties/FunctionResponseTypes/0").asText().equals("ReportBatchItemFailures"));
                return true;
            }
        }
        return false;
    }

    // ---- Lambda functions ----

    @Test
    void everyFunctionRunsJava17FromItsModulesZip() {
        for (String name : Trellis2Stack.FUNCTIONS) {
            JsonNode p = Synth.props(FUNCTION, camel(name) + "Function");
            assertEquals("java17", p.path("Runtime").asText(), name);
            assertEquals(Trellis2Stack.QUARKUS_HANDLER, p.path("Handler").asText(), name);
            assertEquals(Synth.ARTIFACT_BUCKET, p.at("/Code/S3Bucket").asText(), name);
            assertEquals("release/" + name + "/function.zip", p.at("/Code/S3Key").asText(), name);
            assertTrue(p.path("MemorySize").asInt() >= 512, name);
            assertEquals("Active", p.at("/TracingConfig/Mode").asText(), name);
            JsonNode env = p.at("/Environment/Variables");
            assertTrue(Synth.refersTo(env.path("TRELLIS2_REQUESTS_BUCKET"), Synth.logicalId(BUCKET, "RequestsBucket")),
                    name + " gets the requests bucket");
        }
    }

    @Test
    void functionTimeoutsFitTheirCallers() throws IOException {
        for (String api : List.of("submit", "estimate", "status", "result", "cancel")) {
            assertTrue(timeout(api) <= 29, api + " answers within API Gateway's 29 s");
        }
        JsonNode asl = Synth.MAPPER.readTree(Files.readString(Synth.ASL));
        int prepareLimit = asl.at("/States/Prepare/TimeoutSeconds").asInt();
        int finalizeLimit = Math.min(asl.at("/States/Finalize/TimeoutSeconds").asInt(),
                asl.at("/States/Train/ItemProcessor/States/StageFailed/TimeoutSeconds").asInt());
        assertTrue(prepareLimit > 0 && finalizeLimit > 0);
        assertTrue(timeout("prepare") <= prepareLimit, "prepare finishes before its task times out");
        assertEquals(900, timeout("prepare"), "staging an archive whose server ignores Range gets Lambda's maximum");
        assertTrue(timeout("finalize") <= finalizeLimit, "finalize finishes before its tasks time out");
        // SQS needs the visibility timeout to outlast the function, or messages are handed out twice.
        assertTrue(Synth.props("AWS::SQS::Queue", "UploadEventsQueue").path("VisibilityTimeout").asInt()
                >= timeout("upload-trigger") * 6);
        assertTrue(Synth.props("AWS::SQS::Queue", "WebhooksQueue").path("VisibilityTimeout").asInt()
                >= timeout("webhook") * 6);
    }

    private static int timeout(String name) {
        return Synth.props(FUNCTION, camel(name) + "Function").path("Timeout").asInt();
    }

    @Test
    void functionEnvironmentIsWired() {
        String sm = Synth.logicalId("AWS::StepFunctions::StateMachine", "TrainingStateMachine");
        for (String name : List.of("submit", "status", "result", "cancel", "upload-trigger")) {
            JsonNode env = Synth.props(FUNCTION, camel(name) + "Function").at("/Environment/Variables");
            assertTrue(Synth.refersTo(env.path("TRELLIS2_STATE_MACHINE_ARN"), sm), name);
        }
        JsonNode prepare = Synth.props(FUNCTION, "PrepareFunction").at("/Environment/Variables");
        assertEquals("BaseModel", prepare.at("/TRELLIS2_BASE_MODEL/Ref").asText());
        // s3:// data_urls: the uploads bucket only, never the requests bucket (every request's files).
        for (String name : List.of("submit", "estimate", "prepare")) {
            JsonNode buckets = Synth.props(FUNCTION, camel(name) + "Function").at("/Environment/Variables")
                    .path("TRELLIS2_DATA_BUCKETS");
            assertTrue(Synth.refersTo(buckets, Synth.logicalId(BUCKET, "UploadsBucket")), name + ": " + buckets);
            assertFalse(Synth.mentions(buckets, Synth.logicalId(BUCKET, "RequestsBucket")), name + ": " + buckets);
        }
        for (String fn : List.of("FinalizeFunction", "WebhookFunction")) {
            JsonNode env = Synth.props(FUNCTION, fn).at("/Environment/Variables");
            assertTrue(Synth.refersTo(env.path("TRELLIS2_WEBHOOK_QUEUE_URL"),
                    Synth.logicalId("AWS::SQS::Queue", "WebhooksQueue")), fn);
        }
    }

    // ---- state machine ----

    @Test
    void stateMachineHasEveryPlaceholderFilledAndLogs() throws IOException {
        JsonNode p = Synth.props("AWS::StepFunctions::StateMachine", "TrainingStateMachine");
        String asl = Files.readString(Synth.ASL);
        TreeSet<String> names = Workflow.placeholders(asl);
        assertFalse(names.isEmpty(), "the ASL names its resources through placeholders");

        StringBuilder literal = new StringBuilder();
        List<JsonNode> refs = new ArrayList<>();
        for (JsonNode part : p.at("/DefinitionString/Fn::Join/1")) {
            if (part.isTextual()) {
                literal.append(part.asText());
            } else {
                refs.add(part);
            }
        }
        for (String name : names) {
            assertFalse(literal.toString().contains("${" + name + "}"), "${" + name + "} left unfilled");
        }
        assertTrue(refs.stream().anyMatch(r -> Synth.refersTo(r, Synth.logicalId(FUNCTION, "PrepareFunction"))));
        assertTrue(refs.stream().anyMatch(r -> Synth.refersTo(r, Synth.logicalId(FUNCTION, "FinalizeFunction"))));
        assertTrue(refs.stream().anyMatch(r -> Synth.refersTo(r, Synth.logicalId("AWS::Batch::JobQueue", "GpuJobQueue"))));
        assertTrue(refs.stream().anyMatch(r -> Synth.refersTo(r, Synth.logicalId(JOB_DEFINITION, "PreprocessJob"))));
        assertTrue(refs.stream().anyMatch(r -> Synth.refersTo(r, Synth.logicalId(JOB_DEFINITION, "TrainJob"))));
        // What is left of the definition after filling is the ASL itself: same states.
        assertTrue(literal.toString().contains("\"StartAt\": \"Init\"") || literal.toString().contains("\"StartAt\":\"Init\""));

        assertEquals("ALL", p.at("/LoggingConfiguration/Level").asText());
        assertFalse(p.at("/LoggingConfiguration/IncludeExecutionData").asBoolean(true),
                "the logs carry no request bodies or presigned URLs");
        assertTrue(Synth.refersTo(p.at("/LoggingConfiguration/Destinations/0/CloudWatchLogsLogGroup/LogGroupArn"),
                Synth.logicalId("AWS::Logs::LogGroup", "StateMachineLogs")));
        assertTrue(p.at("/TracingConfiguration/Enabled").asBoolean());
    }

    @Test
    void fillingRefusesAPlaceholderTheStackDoesNotKnow() {
        IllegalStateException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                () -> Workflow.fill("{\"Resource\": \"${SomethingNew}\"}", Map.of("JobQueueArn", "x")));
        assertTrue(e.getMessage().contains("SomethingNew"));
        assertEquals("{\"a\": \"arn:q\", \"b\": \"${...} prose\"}",
                Workflow.fill("{\"a\": \"${JobQueueArn}\", \"b\": \"${...} prose\"}", Map.of("JobQueueArn", "arn:q")));
    }

    @Test
    void stateMachineMayRunOnlyItsOwnTasks() {
        Permissions sm = Permissions.ofRole(Synth.props("AWS::StepFunctions::StateMachine", "TrainingStateMachine")
                .at("/RoleArn/Fn::GetAtt/0").asText());
        assertTrue(sm.canOn("lambda:InvokeFunction", Synth.logicalId(FUNCTION, "PrepareFunction")));
        assertTrue(sm.canOn("lambda:InvokeFunction", Synth.logicalId(FUNCTION, "FinalizeFunction")));
        assertFalse(sm.canOn("lambda:InvokeFunction", Synth.logicalId(FUNCTION, "SubmitFunction")));
        assertTrue(sm.canOn("batch:SubmitJob", Synth.logicalId("AWS::Batch::JobQueue", "GpuJobQueue")));
        assertTrue(sm.canOn("batch:SubmitJob", Synth.logicalId(JOB_DEFINITION, "TrainJob")));
        assertFalse(sm.canObject("s3:GetObject", Synth.logicalId(BUCKET, "RequestsBucket"), "requests/r/result.json"));
    }

    @Test
    void extraDataBucketsFromContextAreListedAndReadableByWhatReadsADataUrl() {
        App app = new App(AppProps.builder().outdir(Synth.TARGET.resolve("cdk.out.extra").toString())
                .context(Map.of(Storage.DATA_BUCKETS_CONTEXT, "my-assets, other.bucket")).build());
        Trellis2Stack stack = new Trellis2Stack(app, "Trellis2LoraExtra", StackProps.builder().build(),
                new Trellis2Stack.Sources(Trellis2Stack.FunctionCode.fromBucket(Synth.ARTIFACT_BUCKET, "release/"),
                        Synth.ASL));
        JsonNode resources = Synth.MAPPER.valueToTree(Template.fromStack(stack).toJSON()).path("Resources");
        String submit = Synth.logicalId(FUNCTION, "SubmitFunction");
        JsonNode env = resources.at("/" + submit + "/Properties/Environment/Variables/TRELLIS2_DATA_BUCKETS");
        assertTrue(env.toString().contains(",my-assets,other.bucket"), env.toString());
        assertTrue(Synth.mentions(env, Synth.logicalId(BUCKET, "UploadsBucket")), env.toString());
        // Each role that reads a data_url may read the objects of both, and no other role may.
        Set<String> readers = new TreeSet<>();
        for (JsonNode policy : resources) {
            if (!policy.path("Type").asText().equals("AWS::IAM::Policy")
                    || !policy.at("/Properties/PolicyDocument").toString().contains(":s3:::other.bucket/*")) {
                continue;
            }
            for (JsonNode role : policy.at("/Properties/Roles")) {
                readers.add(role.path("Ref").asText().replaceAll("[0-9A-F]{8}$", ""));
            }
        }
        assertEquals(6, readers.size(), readers.toString());
        for (String who : List.of("SubmitFunction", "EstimateFunction", "PrepareFunction", "ResultFunction",
                "PreprocessJobRole", "TrainJobRole")) {
            assertTrue(readers.stream().anyMatch(r -> r.contains(who)), who + " in " + readers);
        }
        assertThrows(IllegalArgumentException.class, () -> Storage.dataBuckets("ok-bucket,Not_A_Bucket"));
    }

    @Test
    void stateMachineStopsOnlyJobsTaggedWithItsOwnQueue() throws IOException {
        String queue = Synth.logicalId("AWS::Batch::JobQueue", "GpuJobQueue");
        Permissions sm = Permissions.ofRole(Synth.props("AWS::StepFunctions::StateMachine", "TrainingStateMachine")
                .at("/RoleArn/Fn::GetAtt/0").asText());
        int terminate = 0;
        int tag = 0;
        for (JsonNode s : sm.statements()) {
            List<String> actions = Permissions.list(s.path("Action")).stream().map(JsonNode::asText).toList();
            JsonNode eq = s.at("/Condition/StringEquals");
            if (actions.contains("batch:TerminateJob")) {
                terminate++;
                assertEquals(List.of("batch:TerminateJob"), actions, "alone in its statement, with its condition");
                assertTrue(Synth.refersTo(eq.path("aws:ResourceTag/" + Workflow.JOB_QUEUE_TAG), queue), s.toString());
            }
            if (actions.contains("batch:TagResource")) {
                tag++;
                assertEquals(1, eq.size(), "only that tag, with that value: " + s);
                assertTrue(Synth.refersTo(eq.path("aws:RequestTag/" + Workflow.JOB_QUEUE_TAG), queue), s.toString());
            }
        }
        assertEquals(1, terminate);
        assertEquals(1, tag);
        // Every job the definition submits carries that tag, valued with the queue it is submitted to.
        JsonNode asl = Synth.MAPPER.readTree(Files.readString(Synth.ASL));
        for (JsonNode params : List.of(asl.at("/States/Preprocess/Parameters"),
                asl.at("/States/Train/ItemProcessor/States/TrainStage/Parameters"))) {
            assertEquals(params.path("JobQueue").asText(), params.at("/Tags/" + Workflow.JOB_QUEUE_TAG).asText());
        }
    }

    // ---- AWS Batch ----

    @Test
    void gpuComputeEnvironmentsSpotAndOnDemand() {
        Map<String, String> typeById = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> ce : Synth.resources("AWS::Batch::ComputeEnvironment").entrySet()) {
            if (ce.getKey().startsWith("MergeCpuEnvironment")) {
                continue;  // the merge's CPU environment: ShardingStackTest
            }
            JsonNode p = ce.getValue().path("Properties");
            JsonNode c = p.path("ComputeResources");
            assertEquals("managed", p.path("Type").asText().toLowerCase());
            typeById.put(ce.getKey(), c.path("Type").asText());
            assertEquals("MaxVCpus", c.at("/MaxvCpus/Ref").asText(), "max vCPUs is a parameter");
            assertEquals(0, c.path("MinvCpus").asInt(), "nothing runs (or costs) while idle");
            assertEquals("ECS_AL2023_NVIDIA", c.at("/Ec2Configuration/0/ImageType").asText());
            assertTrue(Synth.refersTo(c.at("/LaunchTemplate/LaunchTemplateId"),
                    Synth.logicalId("AWS::EC2::LaunchTemplate", "GpuLaunchTemplate")));
            Set<String> types = new TreeSet<>();
            c.path("InstanceTypes").forEach(t -> types.add(t.asText()));
            assertEquals(new TreeSet<>(GpuInstances.names()), types);
        }
        assertEquals(Set.of("SPOT", "EC2"), new LinkedHashSet<>(typeById.values()));
        for (GpuInstances.Type t : GpuInstances.TYPES) {
            assertTrue(t.gpuMemoryGib() >= GpuInstances.MIN_GPU_MEMORY_GIB, t.name());
            // ECS keeps some memory for itself: a job must fit beside it.
            assertTrue(t.vcpus() >= Trellis2Stack.JOB_VCPUS && t.memoryGib() >= Trellis2Stack.JOB_MEMORY_GIB + 4,
                    t.name() + " holds a job");
        }

        JsonNode order = Synth.props("AWS::Batch::JobQueue", "GpuJobQueue").path("ComputeEnvironmentOrder");
        String first = null;
        for (JsonNode o : order) {
            if (o.path("Order").asInt() == 1) {
                first = o.at("/ComputeEnvironment/Fn::GetAtt/0").asText();
            }
        }
        assertEquals("SPOT", typeById.get(first), "the queue tries spot capacity first");
        assertEquals(2, order.size());
        Map<String, String> cancels = new HashMap<>();
        Synth.props("AWS::Batch::JobQueue", "GpuJobQueue").path("JobStateTimeLimitActions").forEach(a -> {
            assertEquals("CANCEL", a.path("Action").asText());
            cancels.put(a.path("Reason").asText(), a.path("MaxTimeSeconds").asText());
        });
        assertEquals("600", cancels.get("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"),
                "a job no instance can hold is cancelled, not left waiting");
        assertFalse(cancels.containsKey("MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE"),
                "waiting for a busy environment is normal queueing");
    }

    @Test
    void launchTemplateGivesRoomAndPreparesTheCacheForTheContainerUser() {
        JsonNode data = Synth.props("AWS::EC2::LaunchTemplate", "GpuLaunchTemplate").path("LaunchTemplateData");
        assertTrue(data.at("/BlockDeviceMappings/0/Ebs/VolumeSize").asInt() >= 200);
        assertTrue(data.at("/BlockDeviceMappings/0/Ebs/Encrypted").asBoolean());
        assertEquals("required", data.at("/MetadataOptions/HttpTokens").asText());
        String userData = Synth.json().at("/Resources/" + Synth.logicalId("AWS::EC2::LaunchTemplate",
                "GpuLaunchTemplate") + "/Properties/LaunchTemplateData/UserData").toString();
        assertTrue(userData.contains("multipart/mixed"), "Batch only merges MIME multipart user data");
        assertTrue(userData.contains("chown " + Trellis2Stack.CONTAINER_UID + ":" + Trellis2Stack.CONTAINER_UID
                + " " + Trellis2Stack.CACHE_HOST_PATH));
    }

    @Test
    void jobDefinitionsAskForAGpuAndRetryOnlyInfrastructureFailures() throws IOException {
        JsonNode asl = Synth.MAPPER.readTree(Files.readString(Synth.ASL));
        int aslAttempt = asl.at("/States/Preprocess/Parameters/Timeout/AttemptDurationSeconds").asInt();
        for (String id : List.of("PreprocessJobDefinition", "TrainJobDefinition")) {
            JsonNode p = Synth.props(JOB_DEFINITION, id);
            Map<String, String> req = new HashMap<>();
            p.at("/ContainerProperties/ResourceRequirements").forEach(r ->
                    req.put(r.path("Type").asText(), r.path("Value").asText()));
            assertEquals(String.valueOf(Trellis2Stack.JOB_GPUS), req.get("GPU"), id);
            assertEquals(String.valueOf(Trellis2Stack.JOB_VCPUS), req.get("VCPU"), id);
            assertEquals(String.valueOf(Trellis2Stack.JOB_MEMORY_GIB * 1024), req.get("MEMORY"), id);
            assertEquals(aslAttempt, p.at("/Timeout/AttemptDurationSeconds").asInt(), id + " timeout = the ASL's");
            assertTrue(p.at("/ContainerProperties/Image/Fn::Join/1").toString().contains("ImageTag"));

            JsonNode retry = p.path("RetryStrategy");
            assertTrue(retry.path("Attempts").asInt() >= 2, id);
            JsonNode rules = retry.path("EvaluateOnExit");
            assertTrue(rules.size() <= 5, "Batch accepts at most 5 EvaluateOnExit entries");
            assertEquals("EXIT", batchAction(rules, "2", null, "Essential container in task exited"),
                    id + ": the input is at fault, never retried");
            assertEquals("EXIT", batchAction(rules, "1", null, "Essential container in task exited"), id);
            assertEquals("RETRY", batchAction(rules, null, null, "Host EC2 (instance i-0abc) terminated."),
                    id + ": spot reclaim / host failure");
            assertEquals("RETRY", batchAction(rules, null, "CannotPullContainerError: pull access denied", null), id);
            assertEquals("RETRY", batchAction(rules, null, "CannotStartContainerError: Error response", null), id);
        }
    }

    /** AWS Batch's reading of EvaluateOnExit: the first entry whose every given pattern matches; none = RETRY. */
    static String batchAction(JsonNode rules, String exitCode, String reason, String statusReason) {
        for (JsonNode r : rules) {
            if (matches(r.path("OnExitCode"), exitCode) && matches(r.path("OnReason"), reason)
                    && matches(r.path("OnStatusReason"), statusReason)) {
                return r.path("Action").asText().toUpperCase();
            }
        }
        return "RETRY";
    }

    private static boolean matches(JsonNode pattern, String value) {
        if (pattern.isMissingNode()) {
            return true;
        }
        if (value == null) {
            return false;
        }
        String p = pattern.asText();
        return p.endsWith("*") ? value.startsWith(p.substring(0, p.length() - 1)) : value.equals(p);
    }

    @Test
    void jobsGetTheirImageRoleSecretAndCache() {
        for (String stage : List.of("Preprocess", "Train")) {
            JsonNode c = Synth.props(JOB_DEFINITION, stage + "JobDefinition").path("ContainerProperties");
            assertTrue(Synth.mentions(c.path("Image"), Synth.logicalId("AWS::ECR::Repository", stage + "Repository")));
            assertTrue(Synth.refersTo(c.path("JobRoleArn"), Synth.logicalId("AWS::IAM::Role", stage + "JobRole")));
            assertEquals("HF_TOKEN", c.at("/Secrets/0/Name").asText());
            assertEquals(Trellis2Stack.CACHE_HOST_PATH, c.at("/Volumes/0/Host/SourcePath").asText());
            assertEquals("awslogs", c.at("/LogConfiguration/LogDriver").asText());
        }
    }

    @Test
    void imageRepositoriesScanOnPushAndKeepFewImages() {
        Map<String, JsonNode> repos = Synth.resources("AWS::ECR::Repository");
        assertEquals(Set.of("PreprocessRepository", "TrainRepository"), prefixes(repos.keySet()));
        for (Map.Entry<String, JsonNode> r : repos.entrySet()) {
            JsonNode p = r.getValue().path("Properties");
            assertTrue(p.at("/ImageScanningConfiguration/ScanOnPush").asBoolean(), r.getKey());
            assertTrue(p.at("/LifecyclePolicy/LifecyclePolicyText").asText().contains("imageCountMoreThan"));
        }
    }

    // ---- API ----

    @Test
    void apiRoutesNeedAKeyAndReachTheirFunctions() {
        Map<String, String> routes = new TreeMap<>();
        for (JsonNode m : Synth.resources("AWS::ApiGateway::Method").values()) {
            JsonNode p = m.path("Properties");
            if ("OPTIONS".equals(p.path("HttpMethod").asText())) {
                continue;
            }
            assertTrue(p.path("ApiKeyRequired").asBoolean(), p.toString());
            assertEquals("AWS_PROXY", p.at("/Integration/Type").asText());
            String fn = null;
            for (String name : Trellis2Stack.FUNCTIONS) {
                if (Synth.mentions(p.at("/Integration/Uri"), Synth.logicalId(FUNCTION, camel(name) + "Function"))) {
                    fn = name;
                }
            }
            routes.put(p.path("HttpMethod").asText() + " " + path(p.path("ResourceId")), fn);
        }
        assertEquals(Map.of(
                "POST /requests", "submit",
                "POST /estimate", "estimate",
                "GET /requests/{request_id}", "result",
                "GET /requests/{request_id}/status", "status",
                "PUT /requests/{request_id}/cancel", "cancel"), routes);

        JsonNode plan = Synth.props("AWS::ApiGateway::UsagePlan", "UsagePlan");
        assertTrue(plan.at("/Throttle/RateLimit").asDouble() > 0);
        assertTrue(plan.at("/Quota/Limit").asInt() > 0);
        assertTrue(Synth.refersTo(plan.at("/ApiStages/0/ApiId"), Synth.logicalId("AWS::ApiGateway::RestApi", "Api")));
        JsonNode key = Synth.resources("AWS::ApiGateway::UsagePlanKey").values().iterator().next().path("Properties");
        assertTrue(Synth.refersTo(key.path("KeyId"), Synth.logicalId("AWS::ApiGateway::ApiKey", "DefaultApiKey")));

        JsonNode stage = Synth.resources("AWS::ApiGateway::Stage").values().iterator().next().path("Properties");
        assertTrue(Synth.refersTo(stage.at("/AccessLogSetting/DestinationArn"),
                Synth.logicalId("AWS::Logs::LogGroup", "ApiAccessLogs")));
    }

    private static String path(JsonNode resourceRef) {
        if (resourceRef.has("Fn::GetAtt")) {
            return "";
        }
        JsonNode r = Synth.json().at("/Resources/" + resourceRef.path("Ref").asText() + "/Properties");
        return path(r.path("ParentId")) + "/" + r.path("PathPart").asText();
    }

    // ---- least privilege ----

    @Test
    void noRoleHoldsWildcardActions() {
        for (String role : Synth.resources("AWS::IAM::Role").keySet()) {
            for (String action : Permissions.ofRole(role).actions()) {
                assertFalse(action.equals("*") || action.endsWith(":*"), role + " is allowed " + action);
            }
        }
    }

    @Test
    void eachFunctionAndJobReachesOnlyItsOwnPrefixes() {
        String requests = Synth.logicalId(BUCKET, "RequestsBucket");
        String uploads = Synth.logicalId(BUCKET, "UploadsBucket");
        String sm = Synth.logicalId("AWS::StepFunctions::StateMachine", "TrainingStateMachine");
        String adapter = "requests/r1/adapters/texture.safetensors";
        String result = "requests/r1/result.json";
        String dataset = "datasets/abc/preprocessed.zip";

        Permissions train = Permissions.ofRole(Synth.logicalId("AWS::IAM::Role", "TrainJobRole"));
        assertTrue(train.canObject("s3:GetObject", requests, dataset));
        assertTrue(train.canObject("s3:PutObject", requests, adapter));
        assertFalse(train.canObject("s3:PutObject", requests, result), "train writes only adapters");
        assertFalse(train.canObject("s3:PutObject", requests, dataset));
        assertTrue(train.canObject("s3:GetObject", uploads, "u/prepared.zip"), "a preprocessed upload is trained on");
        assertFalse(train.canObject("s3:GetObject", requests, "requests/r1/request.json"));
        assertFalse(train.canObject("s3:PutObject", uploads, "u/prepared.zip"), "uploads are the user's, read-only");

        Permissions preprocess = Permissions.ofRole(Synth.logicalId("AWS::IAM::Role", "PreprocessJobRole"));
        assertTrue(preprocess.canObject("s3:GetObject", uploads, "u/assets.zip"));
        assertTrue(preprocess.canObject("s3:PutObject", requests, dataset));
        assertTrue(preprocess.canObject("s3:PutObject", requests, "requests/r1/preprocess.json"));
        assertTrue(preprocess.canObject("s3:GetObject", requests, "requests/r1/input.json"), "--input-record");
        assertTrue(preprocess.canObject("s3:GetObject", requests, "requests/r1/input.zip"), "Prepare's staged copy");
        assertTrue(train.canObject("s3:GetObject", requests, "requests/r1/input.json"), "--dataset-record");
        assertFalse(preprocess.canObject("s3:PutObject", requests, adapter));
        assertFalse(preprocess.canObject("s3:PutObject", requests, result));
        assertFalse(preprocess.canObject("s3:GetObject", requests, "requests/r1/charge.json"));

        Permissions status = Permissions.ofFunction("StatusFunction");
        assertTrue(status.canObject("s3:GetObject", requests, "requests/r1/request.json"));
        assertFalse(status.canObject("s3:PutObject", requests, "requests/r1/request.json"));
        assertFalse(status.canOn("states:StopExecution", sm));
        assertFalse(status.canOn("states:StartExecution", sm));

        Permissions submit = Permissions.ofFunction("SubmitFunction");
        assertTrue(submit.canObject("s3:PutObject", requests, "requests/r1/request.json"));
        assertFalse(submit.canObject("s3:PutObject", requests, adapter), "submit cannot forge adapters");
        assertFalse(submit.canObject("s3:PutObject", requests, "requests/r1/input.zip"), "submit never stages");

        Permissions prepare = Permissions.ofFunction("PrepareFunction");
        assertTrue(prepare.canObject("s3:PutObject", requests, "requests/r1/input.zip"), "Prepare stages");
        assertTrue(prepare.canObject("s3:PutObject", requests, "requests/r1/input.json"), "and records the input");
        assertFalse(prepare.canObject("s3:PutObject", requests, result));
        assertFalse(prepare.canObject("s3:PutObject", requests, dataset));
        assertTrue(submit.canOn("states:StartExecution", sm));

        assertTrue(Permissions.ofFunction("CancelFunction").canOn("states:StopExecution", sm));
        assertFalse(Permissions.ofFunction("ResultFunction").canObject("s3:PutObject", requests, result));
        assertTrue(Permissions.ofFunction("ResultFunction").canObject("s3:GetObject", requests, dataset),
                "result presigns the dataset download");

        Permissions finalize = Permissions.ofFunction("FinalizeFunction");
        assertTrue(finalize.canObject("s3:PutObject", requests, result));
        assertTrue(finalize.canObject("s3:PutObject", requests, "datasets/abc/dataset.json"));
        assertFalse(finalize.canObject("s3:PutObject", requests, dataset), "finalize never rewrites a dataset");
        assertTrue(finalize.canOn("sqs:SendMessage", Synth.logicalId("AWS::SQS::Queue", "WebhooksQueue")));

        Permissions estimate = Permissions.ofFunction("EstimateFunction");
        assertFalse(estimate.canObject("s3:PutObject", requests, "staging/t/input.zip"), "estimate keeps nothing");
        assertFalse(estimate.canObject("s3:PutObject", requests, "requests/r1/request.json"), "estimate keeps nothing");
        assertFalse(estimate.canObject("s3:GetObject", requests, "requests/r1/request.json"));

        Permissions trigger = Permissions.ofFunction("UploadTriggerFunction");
        assertTrue(trigger.canObject("s3:GetObject", uploads, "uploads/a.zip"));
        assertTrue(trigger.canObject("s3:PutObject", uploads, "uploads/a.error.json"));
        assertFalse(trigger.canObject("s3:PutObject", uploads, "uploads/a.zip"), "never rewrites an upload");
        assertTrue(trigger.canObject("s3:PutObject", requests, "requests/upload-1/request.json"));
        assertFalse(trigger.canObject("s3:PutObject", requests, "requests/upload-1/input.zip"));
        assertTrue(trigger.canOn("states:StartExecution", sm));

        Permissions webhook = Permissions.ofFunction("WebhookFunction");
        // It signs the payload's links (which carry its rights): it reads what they point at, and writes nothing.
        assertTrue(webhook.canObject("s3:GetObject", requests, adapter), "the payload's links are signed by it");
        assertFalse(webhook.canObject("s3:PutObject", requests, result), "webhook writes nothing of the buckets");
        assertFalse(webhook.canObject("s3:PutObject", requests, adapter));
        assertTrue(webhook.canOn("sqs:ChangeMessageVisibility", Synth.logicalId("AWS::SQS::Queue", "WebhooksQueue")));
        assertFalse(webhook.canOn("states:StartExecution", sm));
    }

    // ---- logs and alarms ----

    @Test
    void everyLogGroupHasARetentionAndEveryFunctionItsOwn() {
        Map<String, JsonNode> groups = Synth.resources("AWS::Logs::LogGroup");
        for (Map.Entry<String, JsonNode> g : groups.entrySet()) {
            assertTrue(g.getValue().at("/Properties/RetentionInDays").asInt() > 0, g.getKey());
        }
        for (String name : Trellis2Stack.FUNCTIONS) {
            JsonNode p = Synth.props(FUNCTION, camel(name) + "Function");
            assertTrue(Synth.refersTo(p.at("/LoggingConfig/LogGroup"),
                    Synth.logicalId("AWS::Logs::LogGroup", camel(name) + "FunctionLogs")), name);
        }
    }

    @Test
    void alarmsWatchFailedExecutionsAndDeadLetters() {
        Map<String, JsonNode> alarms = Synth.resources("AWS::CloudWatch::Alarm");
        String sm = Synth.logicalId("AWS::StepFunctions::StateMachine", "TrainingStateMachine");
        String topic = Synth.logicalId("AWS::SNS::Topic", "AlarmTopic");
        boolean failed = false;
        Set<String> watchedQueues = new TreeSet<>();
        for (JsonNode a : alarms.values()) {
            JsonNode p = a.path("Properties");
            assertTrue(Synth.refersTo(p.at("/AlarmActions/0"), topic));
            if ("ExecutionsFailed".equals(p.path("MetricName").asText())
                    && Synth.refersTo(p.at("/Dimensions/0/Value"), sm)) {
                failed = true;
            }
            if ("ApproximateNumberOfMessagesVisible".equals(p.path("MetricName").asText())) {
                watchedQueues.add(p.at("/Dimensions/0/Value/Fn::GetAtt/0").asText());
                assertEquals(0, p.path("Threshold").asInt());
            }
        }
        assertTrue(failed, "an alarm on failed executions");
        assertEquals(new TreeSet<>(List.of(Synth.logicalId("AWS::SQS::Queue", "UploadEventsDeadLetters"),
                Synth.logicalId("AWS::SQS::Queue", "WebhooksDeadLetters"))), watchedQueues);
    }

    // ---- helpers ----

    private static String camel(String name) {
        StringBuilder b = new StringBuilder();
        for (String part : name.split("-")) {
            b.append(Character.toUpperCase(part.charAt(0))).append(part.substring(1));
        }
        return b.toString();
    }

    /** Logical ids without the CDK's 8-hex-digit suffix. */
    private static Set<String> prefixes(Set<String> ids) {
        Set<String> out = new TreeSet<>();
        Pattern hash = Pattern.compile("[0-9A-F]{8}$");
        for (String id : ids) {
            out.add(hash.matcher(id).replaceAll(""));
        }
        return out;
    }

}
