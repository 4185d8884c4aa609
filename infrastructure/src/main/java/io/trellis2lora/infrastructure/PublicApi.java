package io.trellis2lora.infrastructure;

import java.util.List;
import software.amazon.awscdk.services.apigateway.AccessLogFormat;
import software.amazon.awscdk.services.apigateway.ApiKey;
import software.amazon.awscdk.services.apigateway.ApiKeyProps;
import software.amazon.awscdk.services.apigateway.EndpointType;
import software.amazon.awscdk.services.apigateway.LambdaIntegration;
import software.amazon.awscdk.services.apigateway.LogGroupLogDestination;
import software.amazon.awscdk.services.apigateway.MethodLoggingLevel;
import software.amazon.awscdk.services.apigateway.MethodOptions;
import software.amazon.awscdk.services.apigateway.Period;
import software.amazon.awscdk.services.apigateway.QuotaSettings;
import software.amazon.awscdk.services.apigateway.Resource;
import software.amazon.awscdk.services.apigateway.RestApi;
import software.amazon.awscdk.services.apigateway.RestApiProps;
import software.amazon.awscdk.services.apigateway.StageOptions;
import software.amazon.awscdk.services.apigateway.ThrottleSettings;
import software.amazon.awscdk.services.apigateway.UsagePlan;
import software.amazon.awscdk.services.apigateway.UsagePlanPerApiStage;
import software.amazon.awscdk.services.apigateway.UsagePlanProps;
import software.constructs.Construct;

/**
 * The REST API (stage v1, API keys required): POST /requests, POST /estimate, GET /requests/{id},
 * GET /requests/{id}/status, PUT /requests/{id}/cancel, each a Lambda integration; one default key on a usage plan
 * with a throttle and a daily quota.
 */
final class PublicApi extends Section {
    final RestApi api;
    final ApiKey key;

    PublicApi(Construct scope, Functions functions) {
        super(scope, "PublicApi");
        api = new RestApi(this, "Api", RestApiProps.builder()
                .description("TRELLIS.2 LoRA trainer")
                .endpointTypes(List.of(EndpointType.REGIONAL))
                .cloudWatchRole(true)
                .deployOptions(StageOptions.builder()
                        .stageName("v1")
                        .accessLogDestination(new LogGroupLogDestination(logGroup("ApiAccessLogs")))
                        .accessLogFormat(AccessLogFormat.jsonWithStandardFields())
                        .loggingLevel(MethodLoggingLevel.ERROR)
                        .metricsEnabled(true)
                        .tracingEnabled(true)
                        .throttlingRateLimit(20)
                        .throttlingBurstLimit(40)
                        .build())
                .defaultMethodOptions(MethodOptions.builder().apiKeyRequired(true).build())
                .build());

        Resource requests = api.getRoot().addResource("requests");
        requests.addMethod("POST", new LambdaIntegration(functions.get("submit")));
        api.getRoot().addResource("estimate").addMethod("POST", new LambdaIntegration(functions.get("estimate")));
        Resource one = requests.addResource("{request_id}");
        one.addMethod("GET", new LambdaIntegration(functions.get("result")));
        one.addResource("status").addMethod("GET", new LambdaIntegration(functions.get("status")));
        one.addResource("cancel").addMethod("PUT", new LambdaIntegration(functions.get("cancel")));

        key = new ApiKey(this, "DefaultApiKey", ApiKeyProps.builder()
                .description("trellis2-lora default key").enabled(true).build());
        UsagePlan plan = new UsagePlan(this, "UsagePlan", UsagePlanProps.builder()
                .description("trellis2-lora: throttle and daily quota per key")
                .throttle(ThrottleSettings.builder().rateLimit(10).burstLimit(20).build())
                .quota(QuotaSettings.builder().limit(10000).period(Period.DAY).build())
                .apiStages(List.of(UsagePlanPerApiStage.builder().api(api).stage(api.getDeploymentStage()).build()))
                .build());
        plan.addApiKey(key);
    }
}
