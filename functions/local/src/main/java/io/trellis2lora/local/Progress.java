package io.trellis2lora.local;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.Json;
import io.trellis2lora.local.asl.AslError;
import java.io.IOException;
import io.trellis2lora.local.asl.ExecutionListener;
import java.io.PrintStream;
import java.time.Duration;
import java.time.Instant;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/** Prints one line per phase and stage event, and the worker's own output prefixed by its stage. */
public final class Progress implements ExecutionListener {
    private final PrintStream out;
    private final boolean verbose;
    private final Instant start = Instant.now();
    private final Map<String, Instant> entered = new ConcurrentHashMap<>();

    public Progress(PrintStream out, boolean verbose) {
        this.out = out;
        this.verbose = verbose;
    }

    private String who(String label, String state) {
        return label.isEmpty() ? state : label + " " + state;
    }

    private synchronized void line(String text) {
        long s = Duration.between(start, Instant.now()).toSeconds();
        out.printf("[%02d:%02d] %s%n", s / 60, s % 60, text);
        out.flush();
    }

    @Override
    public void stateEntered(String label, String state) {
        entered.put(label + "/" + state, Instant.now());
        if (isPhase(state)) {
            line(who(label, state) + " ...");
        }
    }

    @Override
    public void stateSucceeded(String label, String state) {
        Instant t = entered.remove(label + "/" + state);
        if (isPhase(state) && t != null) {
            line(who(label, state) + " done in " + Duration.between(t, Instant.now()).toSeconds() + " s");
        }
    }

    @Override
    public void retrying(String label, String state, AslError error, long delayMillis) {
        line(who(label, state) + " retrying in " + delayMillis / 1000 + " s after " + error.error());
    }

    /** The failure, how long the state ran, and the cause's last informative line; no "done" line follows it. */
    @Override
    public void caught(String label, String state, AslError error, String next) {
        Instant t = entered.remove(label + "/" + state);
        String after = t == null ? "" : " after " + Duration.between(t, Instant.now()).toSeconds() + " s";
        String why = causeLine(error.cause());
        line(who(label, state) + " FAILED" + after + " (" + error.error() + (why.isEmpty() ? "" : ": " + why)
                + "), continuing with " + next);
    }

    /** A Batch job's cause is its job description: the last line of its log tail says what went wrong. */
    static String causeLine(String cause) {
        if (cause == null || cause.isBlank()) {
            return "";
        }
        String text = cause.strip();
        try {
            JsonNode job = Json.MAPPER.readTree(text);
            JsonNode container = job.path("Container");
            String[] tail = container.path("LogTail").asText("").strip().split("\n");
            text = !tail[tail.length - 1].isBlank() ? tail[tail.length - 1]
                    : container.path("Reason").asText(job.path("StatusReason").asText(text));
        } catch (IOException | RuntimeException notJson) {
            // a plain-text cause: used as it is
        }
        text = text.lines().map(String::strip).filter(l -> !l.isEmpty()).reduce((a, b) -> b).orElse("");
        return text.length() > 240 ? text.substring(0, 237) + "..." : text;
    }

    /**
     * The end of a run: per adapter, the training loss first to last and the flow loss base → adapted on the objects
     * it trained on and on those held out (the record's {@code metrics}), or why a stage failed.
     */
    public void summary(JsonNode result) {
        for (JsonNode a : result.path("adapters")) {
            JsonNode m = a.path("metrics");
            String name = a.path("denoiser").asText();
            StringBuilder b = new StringBuilder(name + ":");
            if (m.has("train_loss_first")) {
                b.append(String.format(" training loss %.4f -> %.4f", m.path("train_loss_first").asDouble(),
                        m.path("train_loss_last").asDouble()));
            }
            line(b.toString());
            pair(name, "fixed-noise flow loss on the training objects", m.path("train_objects_flow_loss"));
            pair(name, "fixed-noise flow loss on the held-out objects", m.path("held_out").path("flow_loss"));
            JsonNode gen = m.path("held_out").path("generation").path("mean");
            for (var it = gen.path("base").fields(); it.hasNext(); ) {
                var e = it.next();
                JsonNode adapted = gen.path("adapted").path(e.getKey());
                if (e.getValue().isNumber() && adapted.isNumber()) {
                    line(String.format("  %s held-out generations %s, base -> adapted: %.4f -> %.4f", name,
                            e.getKey(), e.getValue().asDouble(), adapted.asDouble()));
                }
            }
            for (String note : new String[] {"held_out_note", "evaluation_note", "evaluation_error"}) {
                if (m.hasNonNull(note)) {
                    line("  " + name + ": " + m.get(note).asText());
                }
            }
            if (m.path("held_out").hasNonNull("generation_error")) {
                line("  " + name + ": held-out generations failed: " + m.path("held_out").get("generation_error").asText());
            }
        }
        for (JsonNode f : result.path("failed")) {
            line(f.path("denoiser").asText() + ": FAILED: " + f.path("error").asText());
        }
    }

    private void pair(String name, String what, JsonNode p) {
        if (p.has("base") && p.has("adapted")) {
            double base = p.path("base").asDouble();
            double adapted = p.path("adapted").asDouble();
            line(String.format("  %s %s (%d), base -> adapted: %.4f -> %.4f (%+.1f%%)", name, what,
                    p.path("objects").asInt(), base, adapted, base == 0 ? 0 : 100 * (adapted - base) / base));
        }
    }

    private final Map<String, Instant> lastProgress = new ConcurrentHashMap<>();

    /**
     * Worker output, prefixed by its phase/stage; a progress bar's redraws at most one every 5 s, but always its first
     * (a new phase has begun; it may run a minute before the next) and its last.
     */
    @Override
    public void output(String label, String state, String text) {
        boolean progressBar = text.contains("%|") || text.contains("it/s") || text.contains("s/it");
        if (progressBar && !verbose) {
            int colon = text.indexOf(':');
            String key = label + "/" + state + "/" + (colon < 0 ? "" : text.substring(0, colon));
            Instant last = lastProgress.get(key);
            if (last != null && !text.contains("100%|") && Duration.between(last, Instant.now()).toSeconds() < 5) {
                return;
            }
            lastProgress.put(key, Instant.now());
        }
        line("  " + who(label, state) + " | " + text);
    }

    /** Pass and Choice states are bookkeeping; the phases a user cares about are the tasks and the Map. */
    private static boolean isPhase(String state) {
        return !state.equals("Init") && !state.equals("PreprocessOrCached") && !state.equals("Outcome")
                && !state.startsWith("Stage") && !state.startsWith("Request");  // StageFailed records a failure
    }
}
