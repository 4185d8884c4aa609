package io.trellis2lora.stepfunctions;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.core.testing.Moto;
import io.trellis2lora.core.testing.TestPaths;
import io.trellis2lora.local.LocalRunner;
import io.trellis2lora.local.asl.StateMachine;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import software.amazon.awssdk.services.sfn.SfnClient;
import software.amazon.awssdk.services.sfn.model.SfnException;

/** The definition against the States Language rules, and against what the infrastructure and the local runner expect. */
class StateMachineDefinitionTest {
    private static final ObjectMapper MAPPER = new ObjectMapper();
    /** Realistic values, as the infrastructure's DefinitionSubstitutions would give them. */
    private static final Map<String, String> CLOUD = Map.of(
            "PrepareFunctionArn", "arn:aws:lambda:us-east-1:123456789012:function:trellis2-prepare",
            "FinalizeFunctionArn", "arn:aws:lambda:us-east-1:123456789012:function:trellis2-finalize",
            "JobQueueArn", "arn:aws:batch:us-east-1:123456789012:job-queue/trellis2-gpu",
            "PreprocessJobDefinitionArn", "arn:aws:batch:us-east-1:123456789012:job-definition/trellis2-preprocess:1",
            "TrainJobDefinitionArn", "arn:aws:batch:us-east-1:123456789012:job-definition/trellis2-train:1",
            "MergeJobQueueArn", "arn:aws:batch:us-east-1:123456789012:job-queue/trellis2-cpu",
            "MergeJobDefinitionArn", "arn:aws:batch:us-east-1:123456789012:job-definition/trellis2-merge:1",
            "RequestsBucket", "trellis2-requests");

    static Path definitionFile() {
        return TestPaths.repo().resolve("step-functions/trellis2-lora.asl.json");
    }

    static String definition() throws IOException {
        return Files.readString(definitionFile());
    }

    static String substituted(String text) {
        for (Map.Entry<String, String> e : CLOUD.entrySet()) {
            text = text.replace("${" + e.getKey() + "}", e.getValue());
        }
        return text;
    }

    @Test
    void batchRetryStrategiesStayWithinWhatSubmitJobAccepts() throws IOException {
        // AWS Batch refuses a SubmitJob whose retry strategy has more than 5 EvaluateOnExit entries.
        List<JsonNode> strategies = MAPPER.readTree(definition()).findValues("RetryStrategy");
        assertEquals(4, strategies.size(), "Preprocess, its sharded array and merge, and the training stage");
        for (JsonNode strategy : strategies) {
            JsonNode rules = strategy.get("EvaluateOnExit");
            assertTrue(rules.size() <= 5, "at most 5 EvaluateOnExit entries, found " + rules.size());
            assertEquals("EXIT", rules.get(rules.size() - 1).get("Action").asText(), "an unmatched failure is final");
        }
    }

    @Test
    void everyPlaceholderIsKnownAndDocumented() throws IOException {
        Set<String> used = StateMachine.placeholders(definition());
        String readme = Files.readString(TestPaths.repo().resolve("step-functions/README.md"));
        for (String name : used) {
            assertTrue(CLOUD.containsKey(name), name + " is not one of the placeholders the infrastructure fills in");
            assertTrue(readme.contains("${" + name + "}"), name + " is not documented in step-functions/README.md");
        }
        assertTrue(used.containsAll(List.of("PrepareFunctionArn", "FinalizeFunctionArn", "JobQueueArn",
                "PreprocessJobDefinitionArn", "TrainJobDefinitionArn")));
    }

    /** cfn-lint validates a state machine's Definition against its States Language JSON schema (rule E3601...). */
    @Test
    void passesTheStatesLanguageSchema(@TempDir Path dir) throws Exception {
        JsonNode definition = MAPPER.readTree(definition());
        assertEquals(0, cfnLint(dir, definition).exitCode, () -> "cfn-lint: " + lastOutput);

        // The check can fail: a state with both Next and End, and a Map without its processor, are refused.
        ObjectNode broken = definition.deepCopy();
        ((ObjectNode) broken.at("/States/Preprocess")).put("End", true);
        ((ObjectNode) broken.at("/States/Train")).remove("ItemProcessor");
        Result r = cfnLint(dir, broken);
        assertNotEquals(0, r.exitCode, "cfn-lint accepted a broken definition");
        assertTrue(r.output.contains("E3601"), r.output);
    }

    /** moto's Step Functions (a port of LocalStack's ASL parser) parses the definition at CreateStateMachine. */
    @Test
    void parsesInMotosStepFunctions() throws Exception {
        Moto.endpoint();
        try (SfnClient sfn = Moto.sfn()) {
            String arn = Moto.newStateMachine(sfn, substituted(definition()));
            assertTrue(arn.contains(":stateMachine:"));
            // The check can fail: an unknown state type, a number where a path belongs.
            String badType = substituted(definition()).replace("\"Type\": \"Choice\"", "\"Type\": \"Choise\"");
            String badPath = substituted(definition()).replace("\"MaxConcurrencyPath\": \"$.prepared.stage_count\"",
                    "\"MaxConcurrencyPath\": 3");
            assertNotEquals(substituted(definition()), badType);
            assertNotEquals(substituted(definition()), badPath);
            for (String bad : List.of(badType, badPath)) {
                // moto answers 400 with the parser's message (real Step Functions: InvalidDefinition).
                SfnException e = assertThrows(SfnException.class, () -> Moto.newStateMachine(sfn, bad));
                assertEquals(400, e.statusCode());
                assertTrue(e.getMessage().contains("ASLParserException"), e.getMessage());
            }
        }
    }

    @Test
    void theLocalRunnerImplementsEverythingItUses() throws IOException {
        // The runner loads the copy packaged from this directory; both must be the same file.
        assertEquals(definition(), LocalRunner.definitionText());
        StateMachine.load(LocalRunner.definitionText(), LocalRunner.SUBSTITUTIONS);
        // And refuses what it does not implement, instead of skipping it.
        String withWait = definition().replace("\"Type\": \"Pass\",\n      \"Comment\": \"Fixes",
                "\"Type\": \"Wait\", \"Seconds\": 1,\n      \"Comment\": \"Fixes");
        assertNotEquals(definition(), withWait);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> StateMachine.load(withWait, LocalRunner.SUBSTITUTIONS));
        assertTrue(e.getMessage().contains("Wait"), e.getMessage());
    }

    @Test
    void jobsAreBoundedAndRetriedOnlyForInfrastructure() throws IOException {
        JsonNode root = MAPPER.readTree(definition());
        assertTrue(root.path("TimeoutSeconds").asInt() > 0, "the execution needs a total time limit");
        List<JsonNode> tasks = new ArrayList<>();
        collectTasks(root.get("States"), tasks);
        assertEquals(7, tasks.size(),
                "Prepare, Preprocess, PreprocessShards, MergeShards, TrainStage, StageFailed, Finalize");
        for (JsonNode task : tasks) {
            assertTrue(task.path("TimeoutSeconds").asInt() > 0, "every task needs TimeoutSeconds: " + task);
            if (task.path("Resource").asText().startsWith("arn:aws:states:::batch:submitJob")) {
                assertTrue(task.path("Resource").asText().endsWith(".sync"));
                assertTrue(task.at("/Parameters/Timeout/AttemptDurationSeconds").asInt() > 0);
                JsonNode onExit = task.at("/Parameters/RetryStrategy/EvaluateOnExit");
                assertEquals("2", onExit.get(0).path("OnExitCode").asText(), "exit code 2 is decided first");
                assertEquals("EXIT", onExit.get(0).path("Action").asText());
                // The last rules make every other exit final, so only the listed infrastructure reasons retry.
                assertEquals("EXIT", onExit.get(onExit.size() - 1).path("Action").asText());
                for (JsonNode retrier : task.path("Retry")) {
                    for (JsonNode error : retrier.path("ErrorEquals")) {
                        assertTrue(error.asText().startsWith("Batch."), "Step Functions retries only API errors: " + error);
                    }
                }
            }
        }
        JsonNode map = root.at("/States/Train");
        assertEquals("$.prepared.stage_count", map.path("MaxConcurrencyPath").asText());
        assertEquals("$.prepared.stages", map.path("ItemsPath").asText());
    }

    @Test
    void shardedPreprocessingIsOneArrayJobThenAMergeThatRunsEvenWhenAChildFailed() throws IOException {
        JsonNode states = MAPPER.readTree(definition()).get("States");
        JsonNode choice = states.at("/PreprocessOrCached/Choices/0");
        assertEquals("PreprocessShards", choice.path("Next").asText());
        assertEquals("$.prepared.preprocess_shards", choice.at("/And/1/Variable").asText());
        assertEquals(1, choice.at("/And/1/NumericGreaterThan").asInt(), "Batch arrays hold 2 or more children");
        assertEquals("Preprocess", states.at("/PreprocessOrCached/Choices/1/Next").asText());
        JsonNode array = states.get("PreprocessShards");
        assertEquals("$.prepared.preprocess_shards", array.at("/Parameters/ArrayProperties/Size.$").asText());
        assertEquals(states.at("/Preprocess/Parameters/RetryStrategy"), array.at("/Parameters/RetryStrategy"),
                "each child is retried as the single job is");
        JsonNode childFailed = array.at("/Catch/0");
        assertEquals("[\"States.TaskFailed\"]", childFailed.get("ErrorEquals").toString());
        assertEquals("MergeShards", childFailed.path("Next").asText());
        assertEquals("$.preprocess_job", childFailed.path("ResultPath").asText(), "the plan is kept");
        assertEquals("Finalize", array.at("/Catch/1/Next").asText());
        JsonNode merge = states.get("MergeShards");
        assertEquals("${MergeJobQueueArn}", merge.at("/Parameters/JobQueue").asText());
        assertEquals("$.prepared.merge.command", merge.at("/Parameters/ContainerOverrides/Command.$").asText());
        assertEquals("Train", merge.path("Next").asText());
        assertEquals("Finalize", merge.at("/Catch/0/Next").asText());
    }

    private static void collectTasks(JsonNode states, List<JsonNode> out) {
        states.fields().forEachRemaining(e -> {
            JsonNode s = e.getValue();
            if (s.path("Type").asText().equals("Task")) {
                out.add(s);
            }
            if (s.has("ItemProcessor")) {
                collectTasks(s.at("/ItemProcessor/States"), out);
            }
        });
    }

    private record Result(int exitCode, String output) {
    }

    private static String lastOutput = "";

    private static Result cfnLint(Path dir, JsonNode definition) throws Exception {
        ObjectNode template = MAPPER.createObjectNode();
        template.put("AWSTemplateFormatVersion", "2010-09-09");
        ObjectNode props = template.putObject("Resources").putObject("StateMachine")
                .put("Type", "AWS::StepFunctions::StateMachine").putObject("Properties");
        props.put("RoleArn", "arn:aws:iam::123456789012:role/trellis2-states");
        props.set("Definition", definition);
        props.set("DefinitionSubstitutions", MAPPER.valueToTree(new TreeMap<>(CLOUD)));
        Path file = dir.resolve("template.json");
        Files.writeString(file, MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(template));
        Path venv = TestPaths.venv();
        Path cfnLint = venv.resolve("bin/cfn-lint");
        assertTrue(Files.isExecutable(cfnLint), "cfn-lint is not installed in " + venv + " (bin/setup installs it)");
        Process p = new ProcessBuilder(cfnLint.toString(), file.toString()).redirectErrorStream(true).start();
        String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        lastOutput = output;
        return new Result(p.waitFor(), output);
    }

}
