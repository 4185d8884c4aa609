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
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * {@code arn:aws:states:::batch:submitJob.sync} on this machine: the job's container command
 * ({@code ContainerOverrides.Command}) runs as a local process after the job definition's entry point. The job's
 * RetryStrategy is applied as AWS Batch applies it (EvaluateOnExit in order, first match decides, RETRY when nothing
 * matches); the answer mirrors DescribeJobs, and a failed job is States.TaskFailed with that description as Cause.
 * {@code ArrayProperties.Size} makes it an array job: that many children at once, each with its index in
 * AWS_BATCH_JOB_ARRAY_INDEX, the parent failed when any child failed.
 */
public final class BatchSyncBinding implements TaskBinding {
    public static final String RESOURCE = "arn:aws:states:::batch:submitJob.sync";
    private static final String EXITED = "Essential container in task exited";
    /** What Batch sets in each child of an array job: its index, 0 to Size - 1. */
    public static final String ARRAY_INDEX = "AWS_BATCH_JOB_ARRAY_INDEX";

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

        ObjectNode job = description(p, UUID.randomUUID().toString());
        if (p.has("ArrayProperties")) {
            return runArray(call, p, job, command, environment, attempts, attemptSeconds);
        }
        runJob(call, call.state(), p, job, command, environment, attempts, attemptSeconds);
        if (job.get("Status").asText().equals("FAILED")) {
            throw new AslError(AslError.TASK_FAILED, job.toString());
        }
        return job;
    }

    private static ObjectNode description(JsonNode p, String jobId) {
        ObjectNode job = StateMachine.MAPPER.createObjectNode();
        job.put("JobId", jobId);
        job.put("JobName", p.get("JobName").asText());
        job.put("JobQueue", p.get("JobQueue").asText());
        job.put("JobDefinition", p.get("JobDefinition").asText());
        job.put("CreatedAt", Instant.now().toEpochMilli());
        return job;
    }

    /**
     * An array job as Batch runs one: Size children (2 to 10,000) at once, child I with AWS_BATCH_JOB_ARRAY_INDEX=I and
     * the job's retry strategy of its own; the parent SUCCEEDED when every child did, else FAILED (after all ended).
     */
    private JsonNode runArray(TaskCall call, JsonNode p, ObjectNode parent, List<String> command,
                              Map<String, String> environment, int attempts, long attemptSeconds)
            throws AslError, InterruptedException {
        JsonNode sizeNode = p.path("ArrayProperties").path("Size");
        int size = sizeNode.canConvertToInt() ? sizeNode.asInt() : -1;
        if (!sizeNode.isIntegralNumber() || size < 2 || size > 10_000) {
            throw new AslError("Batch.ClientException", "ArrayProperties.Size must be between 2 and 10000, got "
                    + sizeNode);
        }
        List<ObjectNode> children = new ArrayList<>();
        List<Thread> threads = new ArrayList<>();
        AtomicReference<InterruptedException> interrupted = new AtomicReference<>();
        for (int i = 0; i < size; i++) {
            ObjectNode child = description(p, parent.get("JobId").asText() + ":" + i);
            child.putObject("ArrayProperties").put("Index", i);
            children.add(child);
            Map<String, String> env = new HashMap<>(environment);
            env.put(ARRAY_INDEX, String.valueOf(i));
            String label = call.state() + "[" + i + "]";
            Thread t = new Thread(() -> {
                try {
                    runJob(call, label, p, child, command, env, attempts, attemptSeconds);
                } catch (InterruptedException e) {
                    interrupted.compareAndSet(null, e);
                }
            }, "array-child-" + i);
            threads.add(t);
            t.start();
        }
        try {
            for (Thread t : threads) {
                t.join();
            }
        } catch (InterruptedException e) {
            threads.forEach(Thread::interrupt);
            throw e;
        }
        if (interrupted.get() != null) {
            throw interrupted.get();
        }
        long failed = children.stream().filter(c -> c.get("Status").asText().equals("FAILED")).count();
        ObjectNode array = parent.putObject("ArrayProperties");
        array.put("Size", size);
        array.putObject("StatusSummary").put("SUCCEEDED", size - failed).put("FAILED", failed);
        ArrayNode described = array.putArray("Children");
        children.forEach(described::add);
        parent.put("Status", failed == 0 ? "SUCCEEDED" : "FAILED");
        parent.put("StatusReason", failed == 0 ? "" : failed + " of " + size + " child jobs failed");
        if (failed > 0) {
            throw new AslError(AslError.TASK_FAILED, parent.toString());
        }
        return parent;
    }

    /** One job (or array child) through its attempts; fills in {@code job}'s Status, Attempts and Container. */
    private void runJob(TaskCall call, String label, JsonNode p, ObjectNode job, List<String> command,
                        Map<String, String> environment, int attempts, long attemptSeconds)
            throws InterruptedException {
        ArrayNode history = job.putArray("Attempts");
        for (int attempt = 1; ; attempt++) {
            Attempt result = runOnce(call, label, command, environment, attemptSeconds);
            ObjectNode a = history.addObject();
            a.putObject("Container").put("ExitCode", result.exitCode).put("Reason", result.reason);
            a.put("StatusReason", result.statusReason);
            if (result.exitCode == 0) {
                job.put("Status", "SUCCEEDED");
                job.put("StatusReason", result.statusReason);
                job.putObject("Container").put("ExitCode", 0).set("Command", p.path("ContainerOverrides").path("Command"));
                return;
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
                return;
            }
            call.execution().listener().output(call.label(), label,
                    "attempt " + attempt + " failed (exit " + result.exitCode + "); Batch retry strategy retries it");
        }
    }

    private record Attempt(int exitCode, String statusReason, String reason, List<String> tail) {
    }

    private Attempt runOnce(TaskCall call, String label, List<String> command, Map<String, String> environment,
                            long attemptSeconds) throws InterruptedException {
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
        Thread pump = new Thread(() -> pump(call, label, process, tail), "job-output");
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

    /**
     * Forwards the job's output line by line; progress bars redraw with '\r', which also ends a line here. A bar
     * writes "\r" + its text and nothing after it until the next redraw (a minute away when the next object is slow),
     * so text after a '\r' is forwarded as soon as no more output is waiting, not when the next redraw ends it.
     */
    private static void pump(TaskCall call, String label, Process process, List<String> tail) {
        try (BufferedReader reader = new BufferedReader(
                new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
            StringBuilder line = new StringBuilder();
            boolean redraw = false;
            int c;
            while ((c = reader.read()) != -1) {
                if (c == '\n' || c == '\r') {
                    forward(call, label, tail, line);
                    redraw = c == '\r';
                } else {
                    line.append((char) c);
                    if (redraw && !reader.ready()) {
                        forward(call, label, tail, line);
                    }
                }
            }
            forward(call, label, tail, line);
        } catch (IOException e) {
            // The process ended or was killed: nothing more to forward.
        }
    }

    private static void forward(TaskCall call, String label, List<String> tail, StringBuilder line) {
        if (line.isEmpty()) {
            return;
        }
        String text = line.toString();
        synchronized (tail) {
            tail.add(text);
            if (tail.size() > 20) {
                tail.remove(0);
            }
        }
        call.execution().listener().output(call.label(), label, text);
        line.setLength(0);
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
