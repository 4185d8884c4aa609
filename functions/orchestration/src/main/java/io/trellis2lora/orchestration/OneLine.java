package io.trellis2lora.orchestration;

/** Errors shown to users are one line, and not a page long. */
public final class OneLine {
    private OneLine() {
    }

    public static String of(String text) {
        if (text == null || text.isBlank()) {
            return "";
        }
        String s = String.join(" ", text.trim().split("\\s+"));
        return s.length() > 500 ? s.substring(0, 497) + "..." : s;
    }
}
