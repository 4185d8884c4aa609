package io.trellis2lora.infrastructure;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import software.amazon.awscdk.Annotations;
import software.amazon.awscdk.RemovalPolicy;
import software.amazon.awscdk.Stack;
import software.amazon.awscdk.services.iam.Effect;
import software.amazon.awscdk.services.iam.PolicyStatement;
import software.amazon.awscdk.services.iam.PolicyStatementProps;
import software.amazon.awscdk.services.logs.LogGroup;
import software.amazon.awscdk.services.logs.LogGroupProps;
import software.amazon.awscdk.services.stepfunctions.CfnStateMachine;
import software.amazon.awscdk.services.stepfunctions.DefinitionBody;
import software.amazon.awscdk.services.stepfunctions.LogLevel;
import software.amazon.awscdk.services.stepfunctions.LogOptions;
import software.amazon.awscdk.services.stepfunctions.StateMachine;
import software.amazon.awscdk.services.stepfunctions.StateMachineProps;
import software.constructs.Construct;

/**
 * The state machine: step-functions/'s definition with its ${...} placeholders filled (Prepare and Finalize, the job
 * queue and definitions, the requests bucket), logged, traced, and allowed exactly what its tasks call.
 */
final class Workflow extends Section {
    private static final Pattern PLACEHOLDER = Pattern.compile("\\$\\{([A-Za-z0-9_]+)}");

    /** The tag the ASL puts on every job it submits (Parameters.Tags), valued with this stack's job queue ARN. */
    static final String JOB_QUEUE_TAG = "trellis2-job-queue";

    final StateMachine stateMachine;

    Workflow(Construct scope, Path definition, Storage storage, Functions functions, Jobs jobs) {
        super(scope, "Workflow");
        String asl;
        try {
            asl = Files.readString(definition);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the state machine " + definition, e);
        }
        Map<String, String> values = new LinkedHashMap<>();
        values.put("PrepareFunctionArn", functions.get("prepare").getFunctionArn());
        values.put("FinalizeFunctionArn", functions.get("finalize").getFunctionArn());
        values.put("JobQueueArn", jobs.queue.getJobQueueArn());
        values.put("PreprocessJobDefinitionArn", jobs.preprocess.getJobDefinitionArn());
        values.put("TrainJobDefinitionArn", jobs.train.getJobDefinitionArn());
        values.put("MergeJobQueueArn", jobs.mergeQueue.getJobQueueArn());
        values.put("MergeJobDefinitionArn", jobs.merge.getJobDefinitionArn());
        values.put("RequestsBucket", storage.requests.getBucketName());
        // Filled here rather than through DefinitionSubstitutions, so that CloudFormation leaves any other "${"
        // text in the definition (comments) alone.
        String filled = fill(asl, values);
        LogGroup logs = new LogGroup(this, "StateMachineLogs", LogGroupProps.builder()
                // Step Functions wants its log groups under /aws/vendedlogs/ to keep the resource policy small.
                .logGroupName("/aws/vendedlogs/states/" + Stack.of(this).getStackName() + "-trellis2-lora")
                .retention(LOG_RETENTION).removalPolicy(RemovalPolicy.DESTROY).build());
        stateMachine = new StateMachine(this, "TrainingStateMachine", StateMachineProps.builder()
                .definitionBody(DefinitionBody.fromString(filled))
                // Every transition, without the states' input and output: those carry request bodies and URLs.
                .logs(LogOptions.builder().destination(logs).level(LogLevel.ALL).includeExecutionData(false).build())
                .tracingEnabled(true)
                .build());
        // cfn-lint's E1029 reads any "${" in a string as a Fn::Sub variable; the ones left in the definition are
        // prose in Comment fields (every placeholder was filled above, or fill() would have failed).
        CfnStateMachine cfnStateMachine = (CfnStateMachine) stateMachine.getNode().getDefaultChild();
        cfnStateMachine.addMetadata("cfn-lint", Map.of("config", Map.of("ignore_checks", List.of("E1029"))));
        Annotations.of(cfnStateMachine).acknowledgeWarning("CloudFormation-Validate::E1029",
                "the remaining ${ text is prose in Comment fields; every placeholder is filled");

        // The definition is a file, so the grants the CDK would derive from task objects are written out here.
        for (String fn : List.of("prepare", "finalize")) {
            functions.get(fn).grantInvoke(stateMachine);
        }
        stateMachine.addToRolePolicy(statement(List.of("batch:SubmitJob"), List.of(jobs.queue.getJobQueueArn(),
                jobs.preprocess.getJobDefinitionArn(), jobs.train.getJobDefinitionArn(),
                jobs.mergeQueue.getJobQueueArn(), jobs.merge.getJobDefinitionArn())));
        // DescribeJobs has no resource-level permissions. TerminateJob (what .sync calls on a stopped execution) is
        // limited to this stack's jobs: a job ARN names no queue, so the ASL tags each job it submits with the
        // queue's ARN (trellis2-job-queue; SubmitJob with tags is also authorised as TagResource, allowed for that
        // tag and value only), and only jobs so tagged may be stopped. The merge, on its own queue, carries the same
        // tag: its value names this stack's jobs, not the queue a job runs on.
        stateMachine.addToRolePolicy(statement(List.of("batch:DescribeJobs"), List.of("*")));
        String queue = jobs.queue.getJobQueueArn();
        stateMachine.addToRolePolicy(new PolicyStatement(PolicyStatementProps.builder().effect(Effect.ALLOW)
                .actions(List.of("batch:TerminateJob")).resources(List.of(arn("batch", "job/*")))
                .conditions(Map.of("StringEquals", Map.of("aws:ResourceTag/" + JOB_QUEUE_TAG, queue))).build()));
        stateMachine.addToRolePolicy(new PolicyStatement(PolicyStatementProps.builder().effect(Effect.ALLOW)
                .actions(List.of("batch:TagResource")).resources(List.of(arn("batch", "job/*")))
                .conditions(Map.of("StringEquals", Map.of("aws:RequestTag/" + JOB_QUEUE_TAG, queue))).build()));
        stateMachine.addToRolePolicy(statement(List.of("events:PutTargets", "events:PutRule", "events:DescribeRule"),
                List.of(arn("events", "rule/StepFunctionsGetEventsForBatchJobsRule"))));
    }

    /** The ${...} placeholders in an ASL file, in order of name. */
    static TreeSet<String> placeholders(String asl) {
        TreeSet<String> out = new TreeSet<>();
        Matcher m = PLACEHOLDER.matcher(asl);
        while (m.find()) {
            out.add(m.group(1));
        }
        return out;
    }

    /** The ASL with every ${Name} placeholder replaced; a placeholder the stack has no value for is an error. */
    static String fill(String asl, Map<String, String> values) {
        StringBuilder out = new StringBuilder();
        Matcher m = PLACEHOLDER.matcher(asl);
        while (m.find()) {
            String v = values.get(m.group(1));
            if (v == null) {
                throw new IllegalStateException("the state machine names ${" + m.group(1) + "}, which the stack does "
                        + "not fill (it fills " + values.keySet() + ")");
            }
            m.appendReplacement(out, Matcher.quoteReplacement(v));
        }
        m.appendTail(out);
        return out.toString();
    }
}
