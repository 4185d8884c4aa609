package io.trellis2lora.local.asl;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

/**
 * {@code arn:aws:states:::batch:submitJob.sync} on this machine: the job's container command
 * ({@code ContainerOverrides.Command}) runs as a local process after the job definition's entry point. The job's
 * RetryStrategy is applied as AWS Batch applies it (EvaluateOnExit in order, first match decides, RETRY when nothing
 * matches); the answer mirrors DescribeJobs, and a failed job is States.TaskFailed with that description as Cause.
 */
public final class BatchSyncBinding implements TaskBinding {
    public static final String RESOURCE = "arn:aws:states:::batch:submitJob.sync";
    private static final String EXITED = "Essential container in task exited";

    private final Map<String, List<String>> entryPointsByJobDefinition;
    private final Map<String, Map<String, String>> environmentByJobDefinition;
    private final Path workingDirectory;

    /** @param entryPointsByJobDefinition for each job definition ARN, the command its container image runs */
    public BatchSyncBinding(Map<String, List<String>> entryPointsByJobDefinition, Path workingDirectory) {
        this(entryPointsByJobDefinition, Map.of(), workingDirectory);
    }

    /**
     * @param environmentByJobDefinition extra environment of each job definition's processes, as a job definition's
     *                                   container environment (absent: none)
     */
    public BatchSyncBinding(Map<String, List<String>> entryPointsByJobDefinition,
                            Map<String, Map<String, String>> environmentByJobDefinition, Path workingDirectory) {
        this.entryPointsByJobDefinition = Map.copyOf(entryPointsByJobDefinition);
        this.environmentByJobDefinition = Map.copyOf(environmentByJobDefinition);
        this.workingDirectory = workingDirectory;
    }

    @Override
    public boolean handles(String resource) {
        return RESOURCE.equals(resource);
    }

    @Override
    public JsonNode invoke(TaskCall call) throws AslError, InterruptedException {
        JsonNode p = call.parameters();
        for (String required : new String[] {"JobName", "JobQueue", "JobDefinition"}) {
            if (!p.path(required).isTextual()) {
                throw new AslError("Batch.ClientException", "SubmitJob needs " + required);
            }
        }
        String jobDefinition = p.get("JobDefinition").asText();
        List<String> entryPoint = entryPointsByJobDefinition.get(jobDefinition);
        if (entryPoint == null) {
            throw new AslError("Batch.ClientException", "job definition " + jobDefinition + " does not exist");
        }
        Map<String, String> environment = environmentByJobDefinition.getOrDefault(jobDefinition, Map.of());
        List<String> command = new ArrayList<>(entryPoint);
        p.path("ContainerOverrides").path("Command").forEach(arg -> command.add(arg.asText()));
        int attempts = Math.max(1, p.path("RetryStrategy").path("Attempts").asInt(1));
        long attemptSeconds = p.path("Timeout").path("AttemptDurationSeconds").asLong(0);

        ObjectNode job = StateMachine.MAPPER.createObjectNode();
        job.put("JobId", UUID.randomUUID().toString());
        job.put("JobName", p.get("JobName").asText());
        job.put("JobQueue", p.get("JobQueue").asText());
        job.put("JobDefinition", p.get("JobDefinition").asText());
        job.put("CreatedAt", Instant.now().toEpochMilli());
        ArrayNode history = job.putArray("Attempts");
        for (int attempt = 1; ; attempt++) {
            Attempt result = runOnce(call, command, environment, attemptSeconds);
            ObjectNode a = history.addObject();
            a.putObject("Container").put("ExitCode", result.exitCode).put("Reason", result.reason);
            a.put("StatusReason", result.statusReason);
            if (result.exitCode == 0) {
                job.put("Status", "SUCCEEDED");
                job.put("StatusReason", result.statusReason);
                job.putObject("Container").put("ExitCode", 0).set("Command", p.path("ContainerOverrides").path("Command"));
                return job;
            }
            boolean retry = attempt < attempts && shouldRetry(p.path("RetryStrategy").path("EvaluateOnExit"),
                    result.exitCode, result.statusReason, result.reason);
            if (!retry) {
                job.put("Status", "FAILED");
                job.put("StatusReason", result.statusReason);
                ObjectNode container = job.putObject("Container");
                container.put("ExitCode", result.exitCode).put("Reason", result.reason);
                container.set("Command", p.path("ContainerOverrides").path("Command"));
                container.put("LogTail", String.join("\n", result.tail));
                throw new AslError(AslError.TASK_FAILED, job.toString());
            }
            call.execution().listener().output(call.label(), call.state(),
                    "attempt " + attempt + " failed (exit " + result.exitCode + "); Batch retry strategy retries it");
        }
    }

    private record Attempt(int exitCode, String statusReason, String reason, List<String> tail) {
    }

    private Attempt runOnce(TaskCall call, List<String> command, Map<String, String> environment, long attemptSeconds)
            throws InterruptedException, AslError {
        ProcessBuilder builder = new ProcessBuilder(command).redirectErrorStream(true);
        builder.environment().putAll(environment);
        // Progress is shown as it happens, not when a pipe buffer fills.
        builder.environment().put("PYTHONUNBUFFERED", "1");
        if (workingDirectory != null) {
            builder.directory(workingDirectory.toFile());
        }
        Process process;
        try {
            process = builder.start();
        } catch (IOException e) {
            return new Attempt(-1, "Task failed to start", "CannotStartContainerError: " + e.getMessage(), List.of());
        }
        call.execution().register(process);
        List<String> tail = new ArrayList<>();
        Thread pump = new Thread(() -> pump(call, process, tail), "job-output");
        pump.setDaemon(true);
        pump.start();
        try {
            boolean finished = attemptSeconds > 0 ? process.waitFor(attemptSeconds, TimeUnit.SECONDS) : waitFor(process);
            if (!finished) {
                ProcessTree.terminate(process);
                process.waitFor();
                pump.join(2000);
                return new Attempt(process.exitValue(), "Job attempt duration exceeded timeout", "", tail);
            }
            pump.join(5000);
            return new Attempt(process.exitValue(), EXITED, "", tail);
        } catch (InterruptedException e) {
            ProcessTree.terminate(process);
            throw e;
        } finally {
            call.execution().unregister(process);
        }
    }

    private static boolean waitFor(Process process) throws InterruptedException {
        process.waitFor();
        return true;
    }

    /** Forwards the job's output line by line; progress bars redraw with '\r', which also ends a line here. */
    private static void pump(TaskCall call, Process process, List<String> tail) {
        try (BufferedReader reader = new BufferedReader(
                new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
            StringBuilder line = new StringBuilder();
            int c;
            while ((c = reader.read()) != -1) {
                if (c == '\n' || c == '\r') {
                    if (!line.isEmpty()) {
                        String text = line.toString();
                        synchronized (tail) {
                            tail.add(text);
                            if (tail.size() > 20) {
                                tail.remove(0);
                            }
                        }
                        call.execution().listener().output(call.label(), call.state(), text);
                        line.setLength(0);
                    }
                } else {
                    line.append((char) c);
                }
            }
        } catch (IOException e) {
            // The process ended or was killed: nothing more to forward.
        }
    }

    /** AWS Batch's EvaluateOnExit: the first condition that matches decides; no match means RETRY. */
    public static boolean shouldRetry(JsonNode conditions, int exitCode, String statusReason, String reason) {
        for (JsonNode condition : conditions) {
            // A job that never ran (host lost, container never started) has no exit code to match.
            boolean match = (!condition.has("OnExitCode")
                            || (exitCode >= 0 && glob(condition.get("OnExitCode").asText(), String.valueOf(exitCode))))
                    && (!condition.has("OnStatusReason") || glob(condition.get("OnStatusReason").asText(), statusReason))
                    && (!condition.has("OnReason") || glob(condition.get("OnReason").asText(), reason));
            if (match) {
                return condition.path("Action").asText().equalsIgnoreCase("RETRY");
            }
        }
        return true;
    }

    private static boolean glob(String pattern, String value) {
        return value.matches(Choices.globToRegex(pattern));
    }
}
