package io.trellis2lora.local.asl;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.trellis2lora.local.LocalRunner;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The interpreter's Step Functions semantics on small definitions whose Batch jobs are plain shell commands, and the
 * real definition's job retry rules applied by the Batch binding.
 */
class ExecutionTest {
    private static final String DEF = "arn:aws:batch:local:000000000000:job-definition/sh";
    private static final Map<String, List<String>> SHELL = Map.of(DEF, List.of("/bin/sh", "-c"));

    private static Execution run(String definition, JsonNode input, Path dir, ExecutionListener listener,
                                 LambdaBinding lambdas) throws Exception {
        StateMachine machine = StateMachine.load(definition, Map.of("Def", DEF));
        List<TaskBinding> bindings = lambdas == null ? List.of(new BatchSyncBinding(SHELL, dir))
                : List.of(new BatchSyncBinding(SHELL, dir), lambdas);
        return new Execution(machine, "test-1", input, bindings, listener, item -> item.path("name").asText(null))
                .start();
    }

    private static JsonNode json(String s) throws Exception {
        return StateMachine.MAPPER.readTree(s);
    }

    /** The RetryStrategy the real definition gives its training jobs. */
    private static JsonNode realRetryStrategy() throws Exception {
        return json(LocalRunner.definitionText())
                .at("/States/Train/ItemProcessor/States/TrainStage/Parameters/RetryStrategy");
    }

    private static String jobDefinition(String command, JsonNode retryStrategy, int timeoutSeconds) {
        return """
                {"StartAt": "Job", "States": {"Job": {"Type": "Task",
                  "Resource": "arn:aws:states:::batch:submitJob.sync",
                  "Parameters": {"JobName": "j", "JobQueue": "q", "JobDefinition": "${Def}",
                    "ContainerOverrides": {"Command": [%s]}, "RetryStrategy": %s},
                  "TimeoutSeconds": %d,
                  "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Failed"}],
                  "ResultSelector": {"status.$": "$.Status", "attempts.$": "States.ArrayLength($.Attempts)"},
                  "ResultPath": "$.job", "End": true},
                 "Failed": {"Type": "Pass", "End": true}}}
                """.formatted(StateMachine.MAPPER.valueToTree(command).toString(), retryStrategy, timeoutSeconds);
    }

    private static int attempts(Path counter) throws Exception {
        return Files.exists(counter) ? Files.readAllLines(counter).size() : 0;
    }

    @Test
    void exitCode2IsNeverRetriedAndTheJobDescriptionIsTheCause(@TempDir Path dir) throws Exception {
        Path counter = dir.resolve("attempts");
        Execution e = run(jobDefinition("echo x >> " + counter + "; exit 2", realRetryStrategy(), 60),
                json("{}"), dir, null, null);
        assertEquals(Execution.Status.SUCCEEDED, e.await());
        assertEquals(1, attempts(counter));
        JsonNode failure = e.output().get("failure");
        assertEquals("States.TaskFailed", failure.get("Error").asText());
        JsonNode job = json(failure.get("Cause").asText());
        assertEquals("FAILED", job.get("Status").asText());
        assertEquals(2, job.at("/Container/ExitCode").asInt());
    }

    @Test
    void workerErrorsAreFinalButUnmatchedExitsRetryAsBatchDoes(@TempDir Path dir) throws Exception {
        Path counter = dir.resolve("attempts");
        // The real rules: exit 1 is not an infrastructure failure, so it is not retried.
        Execution e = run(jobDefinition("echo x >> " + counter + "; exit 1", realRetryStrategy(), 60),
                json("{}"), dir, null, null);
        e.await();
        assertEquals(1, attempts(counter));
        assertTrue(e.output().has("failure"));

        // Without a matching rule Batch retries up to Attempts: the second attempt succeeds here.
        Path counter2 = dir.resolve("attempts2");
        Execution again = run(jobDefinition("echo x >> " + counter2 + "; test $(wc -l < " + counter2 + ") -ge 2",
                json("{\"Attempts\": 3}"), 60), json("{}"), dir, null, null);
        again.await();
        assertEquals(2, attempts(counter2));
        assertEquals("SUCCEEDED", again.output().at("/job/status").asText());
        assertEquals(2, again.output().at("/job/attempts").asInt());
    }

    @Test
    void anArrayJobRunsEachChildWithItsIndexAndFailsWhenOneFails(@TempDir Path dir) throws Exception {
        Path seen = dir.resolve("indexes");
        String one = jobDefinition("echo $AWS_BATCH_JOB_ARRAY_INDEX >> " + seen
                + "; test $AWS_BATCH_JOB_ARRAY_INDEX != 1 || exit 2", realRetryStrategy(), 60)
                .replace("\"JobDefinition\": \"${Def}\",", "\"JobDefinition\": \"${Def}\", \"ArrayProperties\": {\"Size\": 3},");
        Execution e = run(one, json("{}"), dir, null, null);
        assertEquals(Execution.Status.SUCCEEDED, e.await());
        assertEquals(List.of("0", "1", "2"), Files.readAllLines(seen).stream().sorted().toList(),
                "each child once (exit 2 is not retried), with its own index");
        JsonNode parent = json(e.output().at("/failure/Cause").asText());
        assertEquals("FAILED", parent.get("Status").asText(), "one failed child fails the parent, as in Batch");
        assertEquals(2, parent.at("/ArrayProperties/StatusSummary/SUCCEEDED").asInt());
        assertEquals(2, parent.at("/ArrayProperties/Children/1/Container/ExitCode").asInt());

        // Batch refuses an array of one: the state machine sends a single job then
        Execution single = run(one.replace("\"Size\": 3", "\"Size\": 1"), json("{}"), dir, null, null);
        assertEquals(Execution.Status.SUCCEEDED, single.await());
        assertEquals("Batch.ClientException", single.output().at("/failure/Error").asText());
    }

    @Test
    void aJobRunsWithItsJobDefinitionsEnvironment(@TempDir Path dir) throws Exception {
        Path seen = dir.resolve("seen");
        StateMachine machine = StateMachine.load(jobDefinition("echo $OMP_NUM_THREADS > " + seen,
                json("{\"Attempts\": 1}"), 60), Map.of("Def", DEF));
        BatchSyncBinding batch = new BatchSyncBinding(SHELL, Map.of(DEF, Map.of("OMP_NUM_THREADS", "3")), dir);
        Execution e = new Execution(machine, "env-1", json("{}"), List.of(batch), null, item -> null).start();
        assertEquals(Execution.Status.SUCCEEDED, e.await());
        assertEquals("3", Files.readString(seen).trim());
    }

    @Test
    void parallelLocalJobsShareTheCores() {
        assertEquals(1, LocalRunner.threadsPerJob(2, 3), "never fewer than one thread");
        assertEquals(2, LocalRunner.threadsPerJob(2, 1));
        assertEquals(5, LocalRunner.threadsPerJob(16, 3));
    }

    @Test
    void hostFailuresMatchTheRetryRules() throws Exception {
        JsonNode rules = realRetryStrategy().get("EvaluateOnExit");
        assertTrue(BatchSyncBinding.shouldRetry(rules, -1, "Host EC2 (instance i-0abc) terminated.", ""));
        assertTrue(BatchSyncBinding.shouldRetry(rules, -1, "Task failed to start", "CannotPullContainerError: x"));
        assertFalse(BatchSyncBinding.shouldRetry(rules, 2, "Host EC2 (instance i-0abc) terminated.", ""));
        assertFalse(BatchSyncBinding.shouldRetry(rules, 1, "Essential container in task exited", ""));
        assertFalse(BatchSyncBinding.shouldRetry(rules, 137, "Essential container in task exited", "OutOfMemoryError"));
    }

    @Test
    void taskTimeoutEndsTheProcess(@TempDir Path dir) throws Exception {
        Path pidFile = dir.resolve("pid");
        Execution e = run(jobDefinition("echo $$ > " + pidFile + "; exec sleep 60", json("{\"Attempts\": 1}"), 2),
                json("{}"), dir, null, null);
        assertTrue(e.await(30, TimeUnit.SECONDS));
        assertEquals("States.Timeout", e.output().at("/failure/Error").asText());
        long pid = Long.parseLong(Files.readString(pidFile).trim());
        Thread.sleep(500);
        assertFalse(ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false), "the timed-out job still runs");
    }

    @Test
    void mapRunsItemsInParallelAndCatchesPerItem(@TempDir Path dir) throws Exception {
        String definition = """
                {"StartAt": "Each", "States": {"Each": {"Type": "Map", "ItemsPath": "$.items",
                  "MaxConcurrencyPath": "$.count", "ResultPath": "$.results", "End": true,
                  "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Job", "States": {
                    "Job": {"Type": "Task", "Resource": "arn:aws:states:::batch:submitJob.sync",
                      "Parameters": {"JobName.$": "$.name", "JobQueue": "q", "JobDefinition": "${Def}",
                        "ContainerOverrides": {"Command.$": "States.Array($.script)"}},
                      "TimeoutSeconds": 60, "ResultPath": null,
                      "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Bad"}],
                      "Next": "Good"},
                    "Good": {"Type": "Pass", "Parameters": {"name.$": "$.name"}, "End": true},
                    "Bad": {"Type": "Pass", "Parameters": {"name.$": "$.name",
                      "error.$": "States.Format('{} failed: {}', $.name, $.failure.Error)"}, "End": true}}}}}}
                """;
        JsonNode input = json("""
                {"count": 3, "items": [{"name": "a", "script": "sleep 1"}, {"name": "b", "script": "sleep 1; exit 3"},
                                       {"name": "c", "script": "sleep 1"}]}""");
        long t0 = System.nanoTime();
        Execution e = run(definition, input, dir, null, null);
        assertEquals(Execution.Status.SUCCEEDED, e.await());
        double seconds = (System.nanoTime() - t0) / 1e9;
        JsonNode results = e.output().get("results");
        assertEquals("a", results.get(0).get("name").asText());
        assertEquals("b failed: States.TaskFailed", results.get(1).get("error").asText());
        assertFalse(results.get(2).has("error"));
        assertTrue(seconds < 2.8, "three 1 s jobs with MaxConcurrency 3 took " + seconds + " s");
    }

    @Test
    void lambdaErrorsAreCaughtAndFailStatesEndTheExecution(@TempDir Path dir) throws Exception {
        String definition = """
                {"StartAt": "Call", "States": {
                  "Call": {"Type": "Task", "Resource": "arn:aws:lambda:local:0:function:f", "TimeoutSeconds": 5,
                    "Parameters": {"n.$": "$.n"}, "ResultPath": "$.r",
                    "Retry": [{"ErrorEquals": ["java.lang.IllegalStateException"], "IntervalSeconds": 0, "MaxAttempts": 2}],
                    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Failed"}],
                    "Next": "Done"},
                  "Done": {"Type": "Succeed"},
                  "Failed": {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"}}}
                """;
        int[] calls = {0};
        LambdaBinding lambdas = new LambdaBinding(Map.of("arn:aws:lambda:local:0:function:f", event -> {
            calls[0]++;
            if (calls[0] < 3) {
                throw new IllegalStateException("flaky");
            }
            if (event.get("n").asInt() > 0) {
                throw new IllegalArgumentException("n must not be positive");
            }
            ObjectNode r = StateMachine.MAPPER.createObjectNode();
            return r.put("ok", true);
        }));
        Execution ok = run(definition, json("{\"n\": 0}"), dir, null, lambdas);
        assertEquals(Execution.Status.SUCCEEDED, ok.await());
        assertEquals(3, calls[0], "two retries of the flaky error, then success");
        assertTrue(ok.output().at("/r/ok").asBoolean());

        calls[0] = 10;
        Execution bad = run(definition, json("{\"n\": 1}"), dir, null, lambdas);
        assertEquals(Execution.Status.FAILED, bad.await());
        assertEquals("java.lang.IllegalArgumentException", bad.error());
        assertEquals("n must not be positive", json(bad.cause()).get("errorMessage").asText());
    }

    @Test
    void stopEndsRunningJobsAndTheirChildren(@TempDir Path dir) throws Exception {
        Path pids = dir.resolve("pids");
        String definition = jobDefinition("sleep 60 & echo $! > " + pids + "; wait", json("{\"Attempts\": 1}"), 120);
        Execution e = run(definition, json("{}"), dir, null, null);
        for (int i = 0; i < 100 && !Files.exists(pids); i++) {
            Thread.sleep(100);
        }
        long child = Long.parseLong(Files.readString(pids).trim());
        e.stop("Cancelled", "by the test");
        assertTrue(e.await(20, TimeUnit.SECONDS));
        assertEquals(Execution.Status.ABORTED, e.status());
        for (int i = 0; i < 50 && ProcessHandle.of(child).map(ProcessHandle::isAlive).orElse(false); i++) {
            Thread.sleep(100);
        }
        assertFalse(ProcessHandle.of(child).map(ProcessHandle::isAlive).orElse(false), "the job's child still runs");
    }

    @Test
    void aProgressBarsRedrawIsShownWhenWrittenNotWhenTheNextRedrawEndsIt(@TempDir Path dir) throws Exception {
        // tqdm writes "\r" + the bar and nothing after it; the next redraw may be a minute away
        List<Long> seen = new java.util.concurrent.CopyOnWriteArrayList<>();
        List<String> lines = new java.util.concurrent.CopyOnWriteArrayList<>();
        long t0 = System.nanoTime();
        ExecutionListener listener = new ExecutionListener() {
            @Override
            public void output(String label, String state, String line) {
                lines.add(line);
                seen.add(TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0));
            }
        };
        Execution e = run(jobDefinition("printf 'start\\n\\r1/2'; sleep 3; printf '\\r2/2\\n'; printf tail",
                realRetryStrategy(), 60), json("{}"), dir, listener, null);
        e.await();
        assertEquals(List.of("start", "1/2", "2/2", "tail"), lines);
        assertTrue(seen.get(2) - seen.get(1) >= 2000, "1/2 was shown before the sleep, not with 2/2: " + seen);
    }
}
