package io.trellis2lora.local.asl;

/** A States Language error: a name that Retry/Catch match on ("States.TaskFailed", "States.Timeout", ...) and a cause. */
public class AslError extends Exception {
    public static final String ALL = "States.ALL";
    public static final String TASK_FAILED = "States.TaskFailed";
    public static final String TIMEOUT = "States.Timeout";
    public static final String RUNTIME = "States.Runtime";

    private final String error;
    private final String cause;

    public AslError(String error, String cause) {
        super(error + ": " + cause);
        this.error = error;
        this.cause = cause == null ? "" : cause;
    }

    public String error() {
        return error;
    }

    public String cause() {
        return cause;
    }

    /** States.Runtime is never caught nor retried, exactly as in Step Functions. */
    public boolean isRuntime() {
        return RUNTIME.equals(error);
    }

    static AslError runtime(String message) {
        return new AslError(RUNTIME, message);
    }
}
