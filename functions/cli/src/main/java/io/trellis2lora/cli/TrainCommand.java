package io.trellis2lora.cli;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.local.LocalRunner;
import io.trellis2lora.local.Progress;
import io.trellis2lora.local.asl.Execution;
import io.trellis2lora.orchestration.Sharding;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * {@code train REQUEST.json --out DIR}: one request, start to end, on this machine (the local runner). Exit 0 when at
 * least one adapter was trained, 1 when the request failed, 2 when it was refused, 130 when interrupted.
 */
final class TrainCommand implements Command {
    private final List<String> worker;

    TrainCommand(List<String> worker) {
        this.worker = worker;
    }

    @Override
    public String name() {
        return "train";
    }

    @Override
    public String usage() {
        return """
                REQUEST.json --out DIR [--base BASE] [--render-size PX] [--preprocess-shards N] [--fresh] [--verbose]
                  the whole training flow on this machine; DIR/result.json lists the adapters, DIR keeps requests/
                  and datasets/ (reused by later runs); PX: condition render size for preprocessing; the same
                  REQUEST.json rerun with the same DIR goes on as the same request, its training resuming from its
                  checkpoints (after Ctrl-C), unless --fresh; N: preprocessing as N parallel worker processes, each
                  on its share of the objects, then merged into the one dataset (default 1)""";
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) {
        Args a = Args.parse(args, Set.of("--out", "--base", "--render-size", "--preprocess-shards"),
                Set.of("--verbose", "-v", "--fresh"));
        Path request = Path.of(a.only("REQUEST.json"));
        Path dir = Path.of(a.required("--out"));
        List<String> preprocessOptions = new ArrayList<>();
        if (a.has("--render-size")) {
            preprocessOptions.addAll(List.of("--render-size", a.options.get("--render-size")));
        }
        Progress progress = new Progress(out, a.has("--verbose") || a.has("-v"));
        LocalRunner runner = new LocalRunner(dir, a.options.get("--base"), worker, progress)
                .preprocessOptions(preprocessOptions).preprocessShards(shards(a.options.get("--preprocess-shards")));
        String requestId;
        boolean resumed;
        try {
            LocalRunner.Submission submission = runner.submit(request, a.has("--fresh"));
            requestId = submission.requestId();
            resumed = submission.resumed();
        } catch (InputRefusedException e) {
            e.problems().forEach(p -> err.println("refused: " + p));
            return 2;
        } catch (Exception e) {
            err.println("error: " + e.getMessage());
            return 1;
        }
        out.println((resumed ? "continuing request " : "request ") + requestId + " (storage: " + runner.out() + ")"
                + (resumed ? "; training resumes from its checkpoints (--fresh: a new request)" : ""));
        Execution execution;
        try {
            execution = runner.start(requestId);
        } catch (Exception e) {
            err.println("error: " + e.getMessage());
            return 1;
        }
        // Ctrl-C: stop the execution, which ends every worker process, before the JVM exits.
        Thread hook = new Thread(() -> {
            if (execution.status() == Execution.Status.RUNNING) {
                err.println("interrupted: stopping every job ...");
                execution.stop("Interrupted", "stopped by the user");
                try {
                    execution.await(30, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        }, "stop-on-interrupt");
        Runtime.getRuntime().addShutdownHook(hook);
        try {
            Execution.Status status = execution.await();
            Runtime.getRuntime().removeShutdownHook(hook);
            Path result = runner.publishResult(requestId);
            if (status == Execution.Status.ABORTED) {
                err.println("stopped; rerun the same command to resume");
                return 130;
            }
            runner.removeCheckpoints(requestId);  // ended: nothing will resume them
            if (result != null) {
                JsonNode json = LocalRunner.readJson(result);
                progress.summary(json);
                report(json, result, out);
            }
            if (status != Execution.Status.SUCCEEDED) {
                err.println("request failed: " + execution.error() + ": " + execution.cause());
                return 1;
            }
            return 0;
        } catch (InterruptedException e) {
            return 130;
        } catch (Exception e) {
            err.println("error: " + e.getMessage());
            return 1;
        }
    }

    private static int shards(String value) {
        if (value == null) {
            return 1;
        }
        try {
            int n = Integer.parseInt(value.trim());
            if (n >= 1 && n <= Sharding.MAX_SHARDS) {
                return n;
            }
        } catch (NumberFormatException e) {
            // said below
        }
        throw new UsageException("--preprocess-shards takes a whole number from 1 to " + Sharding.MAX_SHARDS
                + ", got '" + value + "'");
    }

    private static void report(JsonNode result, Path file, PrintStream out) {
        out.println("result: " + file);
        for (JsonNode a : result.path("adapters")) {
            out.println("  adapter " + a.path("denoiser").asText() + ": " + a.path("lora_file").path("url").asText());
        }
        for (JsonNode f : result.path("failed")) {
            out.println("  failed  " + f.path("denoiser").asText() + ": " + f.path("error").asText());
        }
        if (result.has("preprocessed_data_file")) {
            out.println("  preprocessed dataset: " + result.path("preprocessed_data_file").path("url").asText());
        }
    }
}
