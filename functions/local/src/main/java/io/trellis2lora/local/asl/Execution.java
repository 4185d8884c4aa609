package io.trellis2lora.local.asl;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Function;

/**
 * One run of a {@link StateMachine}, with Step Functions' semantics for the state types the loader accepts: input and
 * output processing (InputPath, Parameters, ResultSelector, ResultPath, OutputPath), Retry with backoff, Catch,
 * TimeoutSeconds, Choice, inline Map with MaxConcurrency, Succeed and Fail. Task states go to {@link TaskBinding}s.
 */
public final class Execution {
    public enum Status { RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED }

    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;

    private final StateMachine machine;
    private final String name;
    private final JsonNode input;
    private final List<TaskBinding> bindings;
    private final ExecutionListener listener;
    private final Function<JsonNode, String> itemLabel;
    private final ExecutorService pool = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "asl-execution");
        t.setDaemon(true);
        return t;
    });
    private final Set<Process> processes = ConcurrentHashMap.newKeySet();
    private final CountDownLatch done = new CountDownLatch(1);
    private final Instant startTime = Instant.now();
    private volatile boolean stopping;
    private volatile Status status = Status.RUNNING;
    private volatile JsonNode output;
    private volatile String error;
    private volatile String cause;

    /** Thrown through the states when the execution is being stopped. */
    private static final class Aborted extends RuntimeException {
        Aborted() {
            super("aborted", null, false, false);
        }
    }

    public Execution(StateMachine machine, String name, JsonNode input, List<TaskBinding> bindings,
                     ExecutionListener listener, Function<JsonNode, String> itemLabel) {
        this.machine = machine;
        this.name = name;
        this.input = input;
        this.bindings = List.copyOf(bindings);
        this.listener = listener == null ? new ExecutionListener() { } : listener;
        this.itemLabel = itemLabel;
    }

    public String name() {
        return name;
    }

    public ExecutionListener listener() {
        return listener;
    }

    public Status status() {
        return status;
    }

    public JsonNode output() {
        return output;
    }

    public String error() {
        return error;
    }

    public String cause() {
        return cause;
    }

    /** Starts the execution on its own thread; returns at once. */
    public Execution start() {
        pool.submit(this::runToEnd);
        return this;
    }

    /** Waits for the end; returns the final status. */
    public Status await() throws InterruptedException {
        done.await();
        return status;
    }

    public boolean await(long timeout, TimeUnit unit) throws InterruptedException {
        return done.await(timeout, unit);
    }

    /** StopExecution: every running task is interrupted and every process it started is ended. */
    public void stop(String stopError, String stopCause) {
        if (status != Status.RUNNING) {
            return;
        }
        stopping = true;
        error = stopError;
        cause = stopCause;
        pool.shutdownNow();
        for (Process p : processes) {
            ProcessTree.terminate(p);
        }
    }

    /** Tasks register the processes they start so that {@link #stop} can end them. */
    public void register(Process process) {
        processes.add(process);
        if (stopping) {
            ProcessTree.terminate(process);
        }
    }

    public void unregister(Process process) {
        processes.remove(process);
    }

    public boolean isStopping() {
        return stopping;
    }

    private void runToEnd() {
        JsonNode timeout = machine.root().get("TimeoutSeconds");
        Future<JsonNode> run = pool.submit(() -> runStates(machine.root(), input, "", null));
        try {
            output = timeout == null ? run.get() : run.get(timeout.asLong(), TimeUnit.SECONDS);
            status = Status.SUCCEEDED;
        } catch (TimeoutException e) {
            stop(AslError.TIMEOUT, "the execution ran past its TimeoutSeconds");
            status = Status.TIMED_OUT;
        } catch (ExecutionException e) {
            Throwable t = e.getCause();
            if (t instanceof AslError a && !stopping) {
                error = a.error();
                cause = a.cause();
                status = Status.FAILED;
            } else if (stopping) {
                status = Status.ABORTED;
            } else {
                error = AslError.RUNTIME;
                cause = String.valueOf(t);
                status = Status.FAILED;
            }
        } catch (InterruptedException | java.util.concurrent.CancellationException e) {
            status = Status.ABORTED;
        } finally {
            if (stopping && status == Status.RUNNING) {
                status = Status.ABORTED;
            }
            if (stopping) {
                Thread.interrupted();
                waitForProcesses();
            }
            pool.shutdownNow();
            done.countDown();
        }
    }

    private void waitForProcesses() {
        for (Process p : processes) {
            try {
                p.waitFor(15, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    /** Runs a States object (the machine or a Map's ItemProcessor) from its StartAt to a terminal state. */
    private JsonNode runStates(JsonNode machineNode, JsonNode stateInput, String label, ObjectNode mapContext)
            throws AslError {
        JsonNode states = machineNode.get("States");
        String current = machineNode.get("StartAt").asText();
        JsonNode data = stateInput;
        while (true) {
            checkStopping();
            JsonNode state = states.get(current);
            listener.stateEntered(label, current);
            Step step = runState(current, state, data, label, mapContext);
            listener.stateSucceeded(label, current);
            if (step.next == null) {
                return step.output;
            }
            current = step.next;
            data = step.output;
        }
    }

    private record Step(JsonNode output, String next) {
    }

    private void checkStopping() {
        if (stopping || Thread.currentThread().isInterrupted()) {
            throw new Aborted();
        }
    }

    private ObjectNode context(String stateName, ObjectNode mapContext, int retryCount) {
        ObjectNode ctx = NODES.objectNode();
        ObjectNode execution = ctx.putObject("Execution");
        execution.put("Id", "arn:aws:states:local:000000000000:execution:trellis2-lora:" + name);
        execution.put("Name", name);
        execution.set("Input", input);
        execution.put("StartTime", startTime.toString());
        ctx.putObject("StateMachine").put("Name", "trellis2-lora");
        ObjectNode st = ctx.putObject("State");
        st.put("Name", stateName);
        st.put("EnteredTime", Instant.now().toString());
        st.put("RetryCount", retryCount);
        if (mapContext != null) {
            ctx.set("Map", mapContext);
        }
        return ctx;
    }

    private Step runState(String stateName, JsonNode state, JsonNode raw, String label, ObjectNode mapContext)
            throws AslError {
        String type = state.get("Type").asText();
        JsonNode effective = path(raw, state, "InputPath");
        switch (type) {
            case "Pass": {
                JsonNode result = state.has("Result") ? state.get("Result")
                        : state.has("Parameters") ? Template.apply(state.get("Parameters"), effective, context(stateName, mapContext, 0))
                        : effective;
                return new Step(output(state, raw, result), next(state));
            }
            case "Succeed":
                return new Step(path(effective, state, "OutputPath"), null);
            case "Fail": {
                String err = state.has("ErrorPath") ? JsonPath.read(effective, state.get("ErrorPath").asText()).asText()
                        : state.path("Error").asText("States.Fail");
                String cs = state.has("CausePath") ? JsonPath.read(effective, state.get("CausePath").asText()).asText()
                        : state.path("Cause").asText("");
                throw new AslError(err, cs);
            }
            case "Choice": {
                for (JsonNode rule : state.get("Choices")) {
                    if (Choices.matches(rule, effective)) {
                        return new Step(path(effective, state, "OutputPath"), rule.get("Next").asText());
                    }
                }
                if (!state.has("Default")) {
                    throw new AslError("States.NoChoiceMatched", "no choice rule matched in " + stateName);
                }
                return new Step(path(effective, state, "OutputPath"), state.get("Default").asText());
            }
            case "Task":
            case "Map":
                return runWithRetryAndCatch(stateName, state, raw, effective, label, mapContext);
            default:
                throw AslError.runtime("state type " + type + " is not implemented");
        }
    }

    private Step runWithRetryAndCatch(String stateName, JsonNode state, JsonNode raw, JsonNode effective,
                                      String label, ObjectNode mapContext) throws AslError {
        int[] retriesUsed = new int[state.path("Retry").size()];
        int retryCount = 0;
        while (true) {
            checkStopping();
            try {
                ObjectNode ctx = context(stateName, mapContext, retryCount);
                JsonNode result = state.get("Type").asText().equals("Task")
                        ? runTask(stateName, state, effective, ctx, label)
                        : runMap(stateName, state, effective, ctx, label);
                if (state.has("ResultSelector")) {
                    result = Template.apply(state.get("ResultSelector"), result, ctx);
                }
                return new Step(output(state, raw, result), next(state));
            } catch (AslError e) {
                if (e.isRuntime() || stopping) {
                    throw e;
                }
                JsonNode retriers = state.path("Retry");
                boolean retried = false;
                for (int i = 0; i < retriers.size(); i++) {
                    JsonNode retrier = retriers.get(i);
                    if (!matches(retrier.get("ErrorEquals"), e.error())) {
                        continue;
                    }
                    int max = retrier.path("MaxAttempts").asInt(3);
                    if (retriesUsed[i] >= max) {
                        break;
                    }
                    double interval = retrier.path("IntervalSeconds").asDouble(1);
                    double backoff = retrier.path("BackoffRate").asDouble(2.0);
                    double delay = interval * Math.pow(backoff, retriesUsed[i]);
                    if (retrier.has("MaxDelaySeconds")) {
                        delay = Math.min(delay, retrier.get("MaxDelaySeconds").asDouble());
                    }
                    retriesUsed[i]++;
                    retryCount++;
                    long millis = (long) (delay * 1000);
                    listener.retrying(label, stateName, e, millis);
                    sleep(millis);
                    retried = true;
                    break;
                }
                if (retried) {
                    continue;
                }
                for (JsonNode catcher : state.path("Catch")) {
                    if (matches(catcher.get("ErrorEquals"), e.error())) {
                        ObjectNode errorOutput = NODES.objectNode();
                        errorOutput.put("Error", e.error());
                        errorOutput.put("Cause", e.cause());
                        String resultPath = catcher.has("ResultPath") ? catcher.get("ResultPath").asText(null) : "$";
                        JsonNode out = resultPath == null ? raw : JsonPath.write(raw, resultPath, errorOutput);
                        listener.caught(label, stateName, e, catcher.get("Next").asText());
                        return new Step(out, catcher.get("Next").asText());
                    }
                }
                throw e;
            }
        }
    }

    private static boolean matches(JsonNode errorEquals, String error) {
        for (JsonNode name : errorEquals) {
            if (name.asText().equals(error) || name.asText().equals(AslError.ALL)) {
                return true;
            }
        }
        return false;
    }

    private void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new Aborted();
        }
    }

    private JsonNode runTask(String stateName, JsonNode state, JsonNode effective, ObjectNode ctx, String label)
            throws AslError {
        String resource = state.get("Resource").asText();
        JsonNode parameters = state.has("Parameters") ? Template.apply(state.get("Parameters"), effective, ctx) : effective;
        TaskBinding binding = bindings.stream().filter(b -> b.handles(resource)).findFirst()
                .orElseThrow(() -> AslError.runtime("no local binding for the resource " + resource));
        TaskBinding.TaskCall call = new TaskBinding.TaskCall(resource, parameters, stateName, label, this);
        Future<JsonNode> future = submit(() -> binding.invoke(call));
        long timeout = state.path("TimeoutSeconds").asLong(99_999_999L);
        try {
            return future.get(timeout, TimeUnit.SECONDS);
        } catch (TimeoutException e) {
            future.cancel(true);
            throw new AslError(AslError.TIMEOUT, stateName + " ran past its TimeoutSeconds (" + timeout + " s)");
        } catch (InterruptedException e) {
            future.cancel(true);
            Thread.currentThread().interrupt();
            throw new Aborted();
        } catch (ExecutionException e) {
            if (e.getCause() instanceof AslError a) {
                throw a;
            }
            if (e.getCause() instanceof InterruptedException || stopping) {
                throw new Aborted();
            }
            throw new AslError(AslError.TASK_FAILED, String.valueOf(e.getCause()));
        }
    }

    private JsonNode runMap(String stateName, JsonNode state, JsonNode effective, ObjectNode ctx, String label)
            throws AslError {
        JsonNode items = state.has("ItemsPath") ? JsonPath.read(effective, state.get("ItemsPath").asText()) : effective;
        if (!items.isArray()) {
            throw AslError.runtime(stateName + ": ItemsPath does not point at an array");
        }
        int max = state.has("MaxConcurrencyPath")
                ? JsonPath.read(effective, state.get("MaxConcurrencyPath").asText()).asInt()
                : state.path("MaxConcurrency").asInt(0);
        Semaphore slots = new Semaphore(max <= 0 ? Integer.MAX_VALUE : max);
        JsonNode processor = state.has("ItemProcessor") ? state.get("ItemProcessor") : state.get("Iterator");
        JsonNode selector = state.has("ItemSelector") ? state.get("ItemSelector") : state.get("Parameters");
        List<Future<JsonNode>> iterations = new ArrayList<>();
        for (int i = 0; i < items.size(); i++) {
            JsonNode item = items.get(i);
            ObjectNode mapCtx = NODES.objectNode();
            mapCtx.putObject("Item").put("Index", i).set("Value", item);
            ObjectNode itemCtx = ctx.deepCopy();
            itemCtx.set("Map", mapCtx);
            JsonNode iterationInput = selector == null ? item : Template.apply(selector, effective, itemCtx);
            String itemName = itemLabel == null ? null : itemLabel.apply(item);
            String iterationLabel = (label.isEmpty() ? "" : label + "/") + stateName + "["
                    + (itemName == null ? String.valueOf(i) : itemName) + "]";
            iterations.add(submit(() -> {
                slots.acquire();
                try {
                    return runStates(processor, iterationInput, iterationLabel, mapCtx);
                } finally {
                    slots.release();
                }
            }));
        }
        ArrayNode results = NODES.arrayNode();
        try {
            for (Future<JsonNode> iteration : iterations) {
                results.add(iteration.get());
            }
        } catch (InterruptedException e) {
            iterations.forEach(f -> f.cancel(true));
            Thread.currentThread().interrupt();
            throw new Aborted();
        } catch (ExecutionException e) {
            // One failed iteration fails the whole Map, as in Step Functions; the others are stopped.
            iterations.forEach(f -> f.cancel(true));
            if (e.getCause() instanceof AslError a) {
                throw a;
            }
            if (stopping || e.getCause() instanceof Aborted) {
                throw new Aborted();
            }
            throw new AslError(AslError.TASK_FAILED, String.valueOf(e.getCause()));
        }
        return results;
    }

    private <T> Future<T> submit(java.util.concurrent.Callable<T> task) {
        try {
            return pool.submit(task);
        } catch (java.util.concurrent.RejectedExecutionException e) {
            throw new Aborted();
        }
    }

    private static JsonNode path(JsonNode data, JsonNode state, String field) throws AslError {
        if (!state.has(field)) {
            return data;
        }
        if (state.get(field).isNull()) {
            return NODES.objectNode();
        }
        return JsonPath.read(data, state.get(field).asText());
    }

    private static JsonNode output(JsonNode state, JsonNode raw, JsonNode result) throws AslError {
        JsonNode combined;
        if (!state.has("ResultPath")) {
            combined = result;
        } else if (state.get("ResultPath").isNull()) {
            combined = raw;
        } else {
            combined = JsonPath.write(raw, state.get("ResultPath").asText(), result);
        }
        return path(combined, state, "OutputPath");
    }

    private static String next(JsonNode state) {
        return state.path("End").asBoolean(false) ? null : state.get("Next").asText();
    }
}
