package io.trellis2lora.infrastructure;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.orchestration.Sharding;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** What sharded preprocessing and multi-GPU training need from the stack: the merge's queue and job, roles, settings. */
class ShardingStackTest {
    private static final String JOB_DEFINITION = "AWS::Batch::JobDefinition";

    private static Map<String, String> resources(JsonNode jobDefinition) {
        Map<String, String> req = new HashMap<>();
        jobDefinition.at("/ContainerProperties/ResourceRequirements").forEach(r ->
                req.put(r.path("Type").asText(), r.path("Value").asText()));
        return req;
    }

    @Test
    void theMergeRunsOnItsOwnCpuQueueWithDiskAndNoGpu() {
        JsonNode ce = Synth.props("AWS::Batch::ComputeEnvironment", "MergeCpuEnvironment").path("ComputeResources");
        assertEquals("EC2", ce.path("Type").asText(), "on demand");
        assertEquals(0, ce.path("MinvCpus").asInt());
        assertEquals("ECS_AL2023", ce.at("/Ec2Configuration/0/ImageType").asText());
        ce.path("InstanceTypes").forEach(t -> assertFalse(t.asText().startsWith("g") || t.asText().startsWith("p"),
                "a CPU instance: " + t));
        JsonNode disk = Synth.props("AWS::EC2::LaunchTemplate", "MergeLaunchTemplate")
                .at("/LaunchTemplateData/BlockDeviceMappings/0/Ebs");
        assertTrue(disk.path("VolumeSize").asInt() >= 200, "room for the shards and the merged dataset");
        assertTrue(disk.path("Encrypted").asBoolean());
        JsonNode queue = Synth.props("AWS::Batch::JobQueue", "MergeJobQueue");
        assertTrue(Synth.refersTo(queue.at("/ComputeEnvironmentOrder/0/ComputeEnvironment"),
                Synth.logicalId("AWS::Batch::ComputeEnvironment", "MergeCpuEnvironment")));

        JsonNode merge = Synth.props(JOB_DEFINITION, "MergeJobDefinition");
        Map<String, String> req = resources(merge);
        assertFalse(req.containsKey("GPU"), req.toString());
        assertEquals(String.valueOf(Jobs.MERGE_VCPUS), req.get("VCPU"));
        assertTrue(Synth.mentions(merge.at("/ContainerProperties/Image"),
                Synth.logicalId("AWS::ECR::Repository", "PreprocessRepository")), "the worker image, merge included");
        assertTrue(Synth.refersTo(merge.at("/ContainerProperties/JobRoleArn"),
                Synth.logicalId("AWS::IAM::Role", "MergeJobRole")));
        assertEquals("EXIT", StackTemplateTest.batchAction(merge.at("/RetryStrategy/EvaluateOnExit"), "2", null,
                "Essential container in task exited"), "no object survived: final");
    }

    @Test
    void rolesReachOnlyTheShardsTheirJobsUse() {
        String requests = Synth.logicalId("AWS::S3::Bucket", "RequestsBucket");
        String shard = "requests/r1/shards/2/preprocessed.zip";
        String dataset = "datasets/abc/preprocessed.zip";
        Permissions merge = Permissions.ofRole(Synth.logicalId("AWS::IAM::Role", "MergeJobRole"));
        assertTrue(merge.canObject("s3:GetObject", requests, "requests/r1/shard-plan.json"));
        assertTrue(merge.canObject("s3:GetObject", requests, shard));
        assertTrue(merge.canObject("s3:PutObject", requests, dataset));
        assertTrue(merge.canObject("s3:PutObject", requests, "requests/r1/preprocess.json"));
        assertFalse(merge.canObject("s3:PutObject", requests, "requests/r1/adapters/texture.safetensors"));
        assertFalse(merge.canObject("s3:GetObject", requests, "requests/r1/request.json"));

        Permissions preprocess = Permissions.ofRole(Synth.logicalId("AWS::IAM::Role", "PreprocessJobRole"));
        assertTrue(preprocess.canObject("s3:GetObject", requests, "requests/r1/shard-plan.json"), "--objects-from");
        assertTrue(preprocess.canObject("s3:PutObject", requests, shard), "a child's own dataset");
        assertFalse(preprocess.canObject("s3:PutObject", requests, "requests/r1/shard-plan.json"));

        Permissions sm = Permissions.ofRole(Synth.props("AWS::StepFunctions::StateMachine", "TrainingStateMachine")
                .at("/RoleArn/Fn::GetAtt/0").asText());
        assertTrue(sm.canOn("batch:SubmitJob", Synth.logicalId("AWS::Batch::JobQueue", "MergeJobQueue")));
        assertTrue(sm.canOn("batch:SubmitJob", Synth.logicalId(JOB_DEFINITION, "MergeJobDefinition")));
    }

    @Test
    void prepareGetsTheShardSettingsAsParameters() {
        JsonNode params = Synth.json().path("Parameters");
        assertEquals(String.valueOf(Sharding.DEFAULT_OBJECTS_PER_SHARD),
                params.at("/ObjectsPerShard/Default").asText());
        assertEquals(String.valueOf(Sharding.DEFAULT_MAX_SHARDS), params.at("/MaxPreprocessShards/Default").asText());
        JsonNode env = Synth.props("AWS::Lambda::Function", "PrepareFunction").at("/Environment/Variables");
        assertEquals("ObjectsPerShard", env.at("/TRELLIS2_OBJECTS_PER_SHARD/Ref").asText());
        assertEquals("MaxPreprocessShards", env.at("/TRELLIS2_MAX_PREPROCESS_SHARDS/Ref").asText());
    }

    @Test
    void aFailedShardNotifiesTheAlarmTopic() {
        JsonNode rule = Synth.props("AWS::Events::Rule", "FailedShardRule");
        JsonNode pattern = rule.path("EventPattern");
        assertEquals("FAILED", pattern.at("/detail/status/0").asText());
        assertTrue(pattern.at("/detail/arrayProperties/index/0/exists").asBoolean(), "array children only");
        assertTrue(Synth.refersTo(pattern.at("/detail/jobQueue/0"), Synth.logicalId("AWS::Batch::JobQueue",
                "GpuJobQueue")));
        assertTrue(Synth.refersTo(rule.at("/Targets/0/Arn"), Synth.logicalId("AWS::SNS::Topic", "AlarmTopic")));
    }

    @Test
    void trainingMayAskForEveryGpuOfAnInstance() {
        // the default: one GPU, and the train job definition asks for exactly that
        assertEquals("1", resources(Synth.props(JOB_DEFINITION, "TrainJobDefinition")).get("GPU"));
        List<GpuInstances.Type> fourGpus = GpuInstances.select("g6e.12xlarge, g6e.24xlarge");
        assertEquals(4, GpuInstances.trainGpus("4", fourGpus));
        assertEquals(8, GpuInstances.trainGpus("8", GpuInstances.TYPES), "p4de / p5");
        IllegalArgumentException tooMany = assertThrows(IllegalArgumentException.class,
                () -> GpuInstances.trainGpus("8", fourGpus));
        assertTrue(tooMany.getMessage().contains("no instance type"), tooMany.getMessage());
        assertThrows(IllegalArgumentException.class, () -> GpuInstances.select("g5.xlarge"),
                "24 GB GPUs are too small for the full-size base");
        assertThrows(IllegalArgumentException.class, () -> GpuInstances.trainGpus("0", GpuInstances.TYPES));
    }
}
