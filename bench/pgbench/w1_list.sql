SELECT api.deals_list(3, 20, '{new,in_progress}', NULL, 100, NULL, NULL, NULL, 'amount', 'desc')::text FROM app.act_as(:user, :org);
