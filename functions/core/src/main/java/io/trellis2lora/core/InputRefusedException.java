package io.trellis2lora.core;

import java.util.List;

/**
 * The user's input is at fault (a 400-class answer, exit code 2, never retried). Carries every problem found, one
 * line each, so a user can fix them all in one go.
 */
public class InputRefusedException extends RuntimeException {
    private final List<String> problems;

    public InputRefusedException(List<String> problems) {
        super(String.join("; ", problems));
        if (problems.isEmpty()) {
            throw new IllegalArgumentException("a refusal needs at least one reason");
        }
        this.problems = List.copyOf(problems);
    }

    public InputRefusedException(String problem) {
        this(List.of(problem));
    }

    public List<String> problems() {
        return problems;
    }
}
