package io.trellis2lora.local;

import io.trellis2lora.local.asl.AslError;
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

    @Override
    public void caught(String label, String state, AslError error, String next) {
        line(who(label, state) + " failed (" + error.error() + "), continuing with " + next);
    }

    private final Map<String, Instant> lastProgress = new ConcurrentHashMap<>();

    /** Worker output, prefixed by its phase/stage; progress-bar redraws at most one every 5 s per stage. */
    @Override
    public void output(String label, String state, String text) {
        boolean progressBar = text.contains("%|") || text.contains("it/s") || text.contains("s/it");
        if (progressBar && !verbose) {
            String key = label + "/" + state;
            Instant last = lastProgress.get(key);
            if (last != null && Duration.between(last, Instant.now()).toSeconds() < 5) {
                return;
            }
            lastProgress.put(key, Instant.now());
        }
        line("  " + who(label, state) + " | " + text);
    }

    /** Pass and Choice states are bookkeeping; the phases a user cares about are the tasks and the Map. */
    private static boolean isPhase(String state) {
        return !state.equals("Init") && !state.equals("PreprocessOrCached") && !state.equals("Outcome")
                && !state.startsWith("Stage") && !state.startsWith("Request");
    }
}
