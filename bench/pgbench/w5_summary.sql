SELECT api.analytics_summary(30)::text FROM app.act_as(:user, :org);
